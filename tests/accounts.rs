//! Accounts configured by MySQL's stored hash (`[[users]] password_hash`):
//! clients log in with their password through the proxy, and the proxy
//! opens MariaDB connections as that very user without ever holding the
//! password (the credential comes from the client's own proof). Real
//! clients: mysql_async, the mariadb CLI, PyMySQL-free COM_CHANGE_USER.

mod common;

use common::*;
use mysql_async::prelude::*;
use mysql_async::{ChangeUserOpts, Conn, OptsBuilder};

fn login(port: u16, user: &str, pass: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .db_name(Some("test"))
}

#[tokio::test]
async fn a_hashed_account_logs_in_and_reaches_mariadb_as_itself() {
    let db = mariadb();
    db.sql_socket(
        "CREATE USER IF NOT EXISTS 'hashed'@'%' IDENTIFIED BY 's3cret'; \
         GRANT SELECT, INSERT ON test.* TO 'hashed'@'%'; \
         CREATE TABLE IF NOT EXISTS test.acct (id INT PRIMARY KEY, v VARCHAR(10)); \
         INSERT IGNORE INTO test.acct VALUES (1, 'a');",
    );
    // The hash as MariaDB stores it, read from MariaDB (not computed here).
    let out = db.sql_socket("SELECT authentication_string FROM mysql.user WHERE user = 'hashed'");
    let hash = out.lines().nth(1).unwrap().trim().to_string();
    assert!(hash.starts_with('*') && hash.len() == 41, "{out}");
    let users = format!(
        "[[users]]\nname = \"root\"\npassword = \"\"\n[[users]]\nname = \"hashed\"\npassword_hash = \"{hash}\"\n"
    );
    let proxy = Proxy::start(db, "", &users);
    assert!(!std::fs::read_to_string(&proxy.config)
        .unwrap()
        .contains("s3cret"));

    let mut c = Conn::new(login(proxy.port, "hashed", "s3cret"))
        .await
        .unwrap();
    let who: String = c
        .query_first("SELECT CURRENT_USER()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, "hashed@%", "MariaDB saw the client's own account");
    let v: Option<String> = c
        .query_first("SELECT v FROM acct WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("a"));
    c.query_drop("INSERT IGNORE INTO acct VALUES (2, 'b')")
        .await
        .unwrap();
    // Its grants are MariaDB's: no UPDATE.
    let err = c
        .query_drop("UPDATE acct SET v = 'x' WHERE id = 1")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1142),
        "{err:?}"
    );

    // A wrong password is the proxy's own 1045.
    let err = Conn::new(login(proxy.port, "hashed", "nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 1045 && e.state == "28000"),
        "{err:?}"
    );

    // COM_CHANGE_USER from root to the hashed account.
    let mut r = Conn::new(login(proxy.port, "root", "")).await.unwrap();
    r.change_user(
        ChangeUserOpts::default()
            .with_user(Some("hashed".into()))
            .with_pass(Some("s3cret".into())),
    )
    .await
    .unwrap();
    let who: String = r
        .query_first("SELECT CURRENT_USER()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who, "hashed@%");

    // The mariadb CLI.
    // (`cli` logs in as root; a later -u/-p wins.)
    let out = cli(
        proxy.port,
        "test",
        "SELECT CURRENT_USER(), v FROM acct WHERE id = 1",
        &["-uhashed", "-ps3cret", "--skip-column-names"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hashed@%\ta\n");
    assert!(!proxy.log_text().contains("s3cret"));
}

/// `accounts.source = "backend"`: accounts come from MariaDB's own
/// `mysql.user` and follow it without a restart.
#[tokio::test]
async fn backend_accounts_follow_mariadb_without_a_restart() {
    let db = mariadb();
    db.sql_socket(
        "DROP USER IF EXISTS 'fromdb'@'%', 'later'@'%'; \
         CREATE USER 'fromdb'@'%' IDENTIFIED BY 'one'; GRANT SELECT ON test.* TO 'fromdb'@'%';",
    );
    let proxy = Proxy::start(
        db,
        "\n[accounts]\nsource = \"backend\"\nmax_age = \"1s\"\n",
        "",
    );
    let who = |user: &'static str, pass: &'static str| async move {
        let mut c = Conn::new(login(proxy.port, user, pass)).await?;
        let w: Option<String> = c.query_first("SELECT CURRENT_USER()").await?;
        Ok::<_, mysql_async::Error>(w.unwrap_or_default())
    };
    let denied = |r: Result<String, mysql_async::Error>| matches!(&r, Err(mysql_async::Error::Server(e)) if e.code == 1045);
    assert_eq!(who("fromdb", "one").await.unwrap(), "fromdb@%");
    assert!(denied(who("fromdb", "two").await));
    assert!(denied(who("nobody", "x").await));

    // A new account: known after the next read (at most one a second).
    db.sql_socket(
        "CREATE USER 'later'@'%' IDENTIFIED BY 'x'; GRANT SELECT ON test.* TO 'later'@'%';",
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(who("later", "x").await.unwrap(), "later@%");
    // A changed password and a dropped account: within max_age.
    db.sql_socket("ALTER USER 'fromdb'@'%' IDENTIFIED BY 'two'; DROP USER 'later'@'%';");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(
        denied(who("fromdb", "one").await),
        "the old password is refused"
    );
    assert_eq!(who("fromdb", "two").await.unwrap(), "fromdb@%");
    assert!(
        denied(who("later", "x").await),
        "a dropped account is refused"
    );

    // The default is "backend"; "config" takes the file's users only.
    for (accounts, lets_in) in [("", true), ("\n[accounts]\nsource = \"config\"\n", false)] {
        let p = Proxy::start(db, accounts, "");
        let r = Conn::new(login(p.port, "fromdb", "two")).await;
        assert_eq!(r.is_ok(), lets_in, "{accounts:?}: {r:?}");
        if let Err(e) = r {
            assert!(
                matches!(&e, mysql_async::Error::Server(e) if e.code == 1045),
                "{e:?}"
            );
        }
    }
}

//! `quickstart.sh`, the README's one command for a bare machine: it starts
//! a private MariaDB with the binlog, loads the sample schema, starts
//! sqlcache with the binlog feed, and stops everything on Ctrl-C. Run as a
//! user would, with this build's binary (`SQLCACHE_BIN`, so the test does
//! not build a release binary of its own).

use std::path::Path;
use std::process::Command;

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("quickstart.sh")
}

/// The private data directory the script announced.
fn work_dir(out: &str) -> String {
    let start = out.find("(data in ").expect("announces its data directory") + 9;
    out[start..].split(')').next().unwrap().to_string()
}

#[test]
fn the_walk_through_shows_a_miss_a_hit_and_both_kinds_of_invalidation() {
    let out = Command::new("bash")
        .arg(script())
        .env("QUICKSTART_CHECK", "1")
        .env("QUICKSTART_PORT", "0")
        .env("SQLCACHE_BIN", env!("CARGO_BIN_EXE_sqlcache"))
        .output()
        .expect("run quickstart.sh");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for step in [
        "-> miss(filled)",
        "-> hit",
        "-> write(invalidated: shop.products",
        "a write made directly in MariaDB, then SELECT name, price FROM products WHERE id = 1 -> 3.70",
        "select name, price from products where id=?",
        "== stopping",
    ] {
        assert!(text.contains(step), "{step:?} missing from:\n{text}");
    }
    assert!(!Path::new(&work_dir(&text)).exists(), "data removed");
}

/// Interactive, in a terminal: it prints how to connect, serves, and
/// Ctrl-C (the terminal's SIGINT to its foreground group, the script's)
/// stops the proxy and MariaDB and removes their data. Before they ran in
/// sessions of their own, the proxy sometimes exited on that SIGINT before
/// the script's trap ran, and the script reported an unexpected exit.
#[test]
fn ctrl_c_stops_everything() {
    let driver = r#"
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("bash", ["bash", sys.argv[1]])
out = b""
def read_until(word, secs):
    global out
    end = time.time() + secs
    while word not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return word in out
ready = read_until(b"Press Ctrl-C", 120)
port = out.split(b"-h127.0.0.1 -P")[1].split(b" ")[0].decode() if ready else ""
print("PORT", port, flush=True)
if ready:
    ok = os.system(f"mariadb --no-defaults -h127.0.0.1 -P{port} -uroot shop -N -e 'SELECT name FROM products WHERE id = 2' > /dev/null")
    print("QUERY", ok, flush=True)
os.write(fd, b"\x03")
read_until(b"\x00never", 10)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode(errors="replace"))
print("EXIT", os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .args(["-c", driver])
        .arg(script())
        .env("QUICKSTART_PORT", "0")
        .env("SQLCACHE_BIN", env!("CARGO_BIN_EXE_sqlcache"))
        .output()
        .expect("python3 with pty");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("QUERY 0"), "served a query:\n{text}");
    assert!(
        text.contains("== stopping") && text.contains("EXIT 130"),
        "{text}"
    );
    let port: u16 = text
        .lines()
        .find_map(|l| l.strip_prefix("PORT "))
        .and_then(|p| p.trim().parse().ok())
        .expect("port announced");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the proxy stopped"
    );
    let work = work_dir(&text);
    assert!(!Path::new(&work).exists(), "data removed: {work}");
    let left = Command::new("pgrep").args(["-f", &work]).output().unwrap();
    assert!(
        left.stdout.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

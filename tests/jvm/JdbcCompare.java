// JDBC through the proxy compared with JDBC straight to MariaDB, for
// MariaDB Connector/J and MySQL Connector/J, client-side and server-side
// (useServerPrepStmts=true) prepared statements, a HikariCP pool and a
// transaction with rollback. Run as a single-file source program:
//   java -cp '.tools/jvm/clients/*' JdbcCompare.java PROXY_PORT DIRECT_PORT
// Expects table test.jt (tests/real_clients.rs creates it). Prints one line
// per check and "N passed, M failed"; exits 1 on any failure.
import java.sql.*;
import java.util.*;
import com.zaxxer.hikari.HikariConfig;
import com.zaxxer.hikari.HikariDataSource;

public class JdbcCompare {
    static int passed = 0, failed = 0;

    static void check(String what, boolean ok, Object detail) {
        if (ok) passed++; else failed++;
        System.out.println((ok ? "ok   " : "FAIL ") + what + (ok ? "" : ": " + detail));
    }

    static String url(String driver, int port, boolean serverPrep) {
        if (driver.equals("mariadb"))
            return "jdbc:mariadb://127.0.0.1:" + port + "/test?user=root&password=&useServerPrepStmts=" + serverPrep;
        return "jdbc:mysql://127.0.0.1:" + port + "/test?user=root&password=&sslMode=DISABLED"
            + "&allowPublicKeyRetrieval=true&useServerPrepStmts=" + serverPrep;
    }

    /** Values and column metadata of one result, as text. */
    static List<String> result(ResultSet rs) throws SQLException {
        List<String> out = new ArrayList<>();
        ResultSetMetaData m = rs.getMetaData();
        for (int i = 1; i <= m.getColumnCount(); i++)
            out.add("col " + m.getColumnLabel(i) + " type=" + m.getColumnType(i) + "/" + m.getColumnTypeName(i)
                + " prec=" + m.getPrecision(i) + " scale=" + m.getScale(i) + " signed=" + m.isSigned(i)
                + " null=" + m.isNullable(i) + " class=" + m.getColumnClassName(i));
        while (rs.next())
            for (int i = 1; i <= m.getColumnCount(); i++) {
                Object o;
                try { o = rs.getObject(i); } catch (SQLException e) { o = "getObject: " + e.getMessage() + " / " + rs.getString(i); }
                out.add(m.getColumnLabel(i) + "=" + (o instanceof byte[] ? Arrays.toString((byte[]) o) : String.valueOf(o)));
            }
        return out;
    }

    static List<String> point(Connection c, int id) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("SELECT * FROM jt WHERE id = ?")) {
            ps.setInt(1, id);
            try (ResultSet rs = ps.executeQuery()) { return result(rs); }
        }
    }

    static String last(Connection c) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SHOW SQLCACHE LAST")) {
            rs.next();
            return rs.getString(2);
        }
    }

    static String error(Connection c, String sql) {
        try (Statement s = c.createStatement()) {
            s.executeQuery(sql);
            return "no error";
        } catch (SQLException e) {
            // Connector/J puts its connection id in the message: not compared.
            return e.getErrorCode() + "/" + e.getSQLState() + " " + e.getMessage().replaceAll("\\(conn=\\d+\\) ", "");
        }
    }

    /** A parameter bound with `bind` to `sql`'s first placeholder, id 1 to the second. */
    interface Bind { void to(PreparedStatement s) throws SQLException; }

    static List<String> run(Connection c, String sql, Bind bind) throws SQLException {
        try (PreparedStatement s = c.prepareStatement(sql)) {
            bind.to(s);
            try (ResultSet rs = s.executeQuery()) { return result(rs); }
        }
    }

    /**
     * The types the client declares reach MariaDB: a byte[] parameter is a BLOB
     * (compared as binary), a java.sql.Date a DATE, a byte a TINYINT. A point
     * read whose result depends on the declared type is cached per type.
     */
    static void declaredTypes(String tag, Connection p, Connection d) throws SQLException {
        String sql = "SELECT 'a' = ? AS eq, ? AS b, ? AS t, ? AS dt, ? AS s";
        Bind bind = s -> {
            s.setBytes(1, "A".getBytes()); s.setBytes(2, "x".getBytes()); s.setByte(3, (byte) 5);
            s.setDate(4, java.sql.Date.valueOf("2020-01-02")); s.setString(5, "str");
        };
        List<String> x = run(p, sql, bind), y = run(d, sql, bind);
        check(tag + " declared parameter types", x.equals(y), x + " vs " + y);
        // The same value as a BLOB ('a' = 'A' is false) and as a string (true).
        String point = "SELECT id, 'a' = ? AS same FROM jt WHERE id = ?";
        Bind asBytes = s -> { s.setBytes(1, "A".getBytes()); s.setInt(2, 1); };
        Bind asString = s -> { s.setString(1, "A"); s.setInt(2, 1); };
        for (int round = 0; round < 2; round++)
            for (Bind b : List.of(asBytes, asString)) {
                String what = tag + " point read per declared type" + (b == asBytes ? " (bytes)" : " (string)");
                List<String> got = run(p, point, b), want = run(d, point, b);
                check(what + ", round " + round, got.equals(want), got + " vs " + want);
                // (Client-side, Connector/J writes bytes as _binary'A', which
                // the proxy forwards rather than caches.)
                if (round == 1 && tag.endsWith("server-prepared"))
                    check(what + " is a hit", last(p).startsWith("hit"), last(p));
            }
    }

    static void compare(String driver, boolean serverPrep, int proxy, int direct) throws Exception {
        String tag = driver + (serverPrep ? " server-prepared" : " client-prepared");
        try (Connection p = DriverManager.getConnection(url(driver, proxy, serverPrep));
             Connection d = DriverManager.getConnection(url(driver, direct, serverPrep))) {
            for (int id = 1; id <= 3; id++) {
                List<String> want = point(d, id);
                check(tag + " row " + id + " (miss)", point(p, id).equals(want), point(p, id) + " vs " + want);
                List<String> again = point(p, id);
                String route = last(p);
                check(tag + " row " + id + " is a hit", route.startsWith("hit"), route);
                check(tag + " row " + id + " (hit)", again.equals(want), again + " vs " + want);
            }
            String sql = "SELECT id, v, d, CAST(? AS CHAR) AS p FROM jt WHERE id <= ? ORDER BY id";
            try (PreparedStatement a = p.prepareStatement(sql); PreparedStatement b = d.prepareStatement(sql)) {
                for (PreparedStatement s : List.of(a, b)) { s.setString(1, "x'y"); s.setLong(2, 2); }
                try (ResultSet ra = a.executeQuery(); ResultSet rb = b.executeQuery()) {
                    List<String> x = result(ra), y = result(rb);
                    check(tag + " parameters and a range", x.equals(y), x + " vs " + y);
                }
            }
            declaredTypes(tag, p, d);
            String bad = "SELECT * FROM no_such_table";
            check(tag + " error code and SQLSTATE", error(p, bad).equals(error(d, bad)), error(p, bad) + " vs " + error(d, bad));
            // A transaction rolled back leaves the row (and the cache) as it was.
            List<String> before = point(p, 1);
            p.setAutoCommit(false);
            try (Statement s = p.createStatement()) {
                s.executeUpdate("UPDATE jt SET v = 'rolled back' WHERE id = 1");
                List<String> inside = point(p, 1);
                check(tag + " sees its own uncommitted write", inside.toString().contains("rolled back"), inside);
            }
            p.rollback();
            p.setAutoCommit(true);
            check(tag + " rollback", point(p, 1).equals(before) && point(d, 1).equals(before), point(p, 1));
        }
    }

    static void hikari(int proxy, int direct) throws Exception {
        HikariConfig cfg = new HikariConfig();
        cfg.setJdbcUrl(url("mariadb", proxy, true));
        cfg.setMaximumPoolSize(4);
        try (HikariDataSource pool = new HikariDataSource(cfg);
             Connection d = DriverManager.getConnection(url("mariadb", direct, true))) {
            Map<Integer, List<String>> want = new HashMap<>();
            for (int id = 1; id <= 3; id++) want.put(id, point(d, id));
            List<Thread> threads = new ArrayList<>();
            List<String> wrong = Collections.synchronizedList(new ArrayList<>());
            for (int t = 0; t < 4; t++) {
                Thread th = new Thread(() -> {
                    for (int i = 0; i < 50; i++) {
                        int id = 1 + i % 3;
                        try (Connection c = pool.getConnection()) {
                            if (!point(c, id).equals(want.get(id))) wrong.add("row " + id);
                        } catch (SQLException e) { wrong.add(e.toString()); }
                    }
                });
                th.start();
                threads.add(th);
            }
            for (Thread th : threads) th.join();
            check("HikariCP pool: 200 reads from 4 threads", wrong.isEmpty(), wrong);
        }
    }

    public static void main(String[] args) throws Exception {
        int proxy = Integer.parseInt(args[0]), direct = Integer.parseInt(args[1]);
        for (String driver : List.of("mariadb", "mysql"))
            for (boolean serverPrep : List.of(false, true))
                compare(driver, serverPrep, proxy, direct);
        hikari(proxy, direct);
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}

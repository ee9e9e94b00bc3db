// go-sql-driver/mysql through the proxy compared with straight to MariaDB,
// with interpolateParams off (server-side prepared statements) and on
// (client-side interpolation, text protocol). Expects table test.jt
// (tests/clients.rs creates it). Usage: go run . PROXY DIRECT_PORT, PROXY a
// port or the proxy's Unix socket path.
// Prints one line per check and "N passed, M failed"; exits 1 on failure.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/go-sql-driver/mysql"
)

var passed, failed int

func check(what string, ok bool, detail any) {
	if ok {
		passed++
		fmt.Println("ok   " + what)
	} else {
		failed++
		fmt.Printf("FAIL %s: %v\n", what, detail)
	}
}

// result is a query's column metadata and values, as text.
func result(c *sql.Conn, q string, args ...any) ([]string, error) {
	rows, err := c.QueryContext(context.Background(), q, args...)
	if err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			return []string{fmt.Sprintf("error %d/%s %s", me.Number, string(me.SQLState[:]), me.Message)}, nil
		}
		return nil, err
	}
	defer rows.Close()
	var out []string
	types, _ := rows.ColumnTypes()
	for _, t := range types {
		n, nok := t.Nullable()
		p, s, dok := t.DecimalSize()
		l, lok := t.Length()
		out = append(out, fmt.Sprintf("col %s %s null=%v/%v dec=%d,%d/%v len=%d/%v scan=%v",
			t.Name(), t.DatabaseTypeName(), n, nok, p, s, dok, l, lok, t.ScanType()))
	}
	vals := make([]sql.RawBytes, len(types))
	ptrs := make([]any, len(types))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		for i, v := range vals {
			if v == nil {
				out = append(out, types[i].Name()+"=NULL")
			} else {
				out = append(out, fmt.Sprintf("%s=%q", types[i].Name(), string(v)))
			}
		}
	}
	return out, rows.Err()
}

// open connects to a port on 127.0.0.1, or to a Unix socket path.
func open(to string, interpolate bool) *sql.Conn {
	addr := "tcp(127.0.0.1:" + to + ")"
	if strings.HasPrefix(to, "/") {
		addr = "unix(" + to + ")"
	}
	dsn := fmt.Sprintf("root@%s/test?interpolateParams=%v", addr, interpolate)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		panic(err)
	}
	c, err := db.Conn(context.Background())
	if err != nil {
		panic(err)
	}
	return c
}

func compare(proxyPort, directPort string, interpolate bool) {
	tag := fmt.Sprintf("interpolateParams=%v", interpolate)
	p, d := open(proxyPort, interpolate), open(directPort, interpolate)
	same := func(what, q string, args ...any) {
		x, err1 := result(p, q, args...)
		y, err2 := result(d, q, args...)
		check(tag+" "+what, err1 == nil && err2 == nil && reflect.DeepEqual(x, y), fmt.Sprint(x, " vs ", y, err1, err2))
	}
	for id := 1; id <= 3; id++ {
		same(fmt.Sprintf("row %d (miss)", id), "SELECT * FROM jt WHERE id = ?", id)
		same(fmt.Sprintf("row %d (hit)", id), "SELECT * FROM jt WHERE id = ?", id)
		var k, route string
		err := p.QueryRowContext(context.Background(), "SHOW SQLCACHE LAST").Scan(&k, &route)
		check(fmt.Sprintf("%s row %d is a hit", tag, id), err == nil && len(route) >= 3 && route[:3] == "hit", route)
	}
	same("parameters and a range", "SELECT id, v, CAST(? AS CHAR) AS p FROM jt WHERE id <= ? ORDER BY id", "x'y", 2)
	// go-sql-driver declares a string as MYSQL_TYPE_STRING and a []byte as
	// well; the column of `? AS p` is described by the declared type.
	same("declared parameter types", "SELECT ? AS p, ? AS b, ? AS n, 'a' = ? AS eq", "str", []byte("x"), int64(7), "A")
	same("error code and SQLSTATE", "SELECT * FROM no_such_table WHERE id = ?", 1)
}

func main() {
	compare(os.Args[1], os.Args[2], false)
	compare(os.Args[1], os.Args[2], true)
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		os.Exit(1)
	}
}

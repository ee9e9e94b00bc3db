// Node mysql2 through the proxy compared with straight to MariaDB, with
// `query` (text protocol, client-side escaping) and `execute` (server-side
// prepared statements). Expects table test.jt (tests/clients.rs creates it).
// Usage: node compare.js PROXY_PORT DIRECT_PORT
// Prints one line per check and "N passed, M failed"; exits 1 on failure.
'use strict';
const mysql = require('mysql2/promise');
const assert = require('node:assert');

let passed = 0, failed = 0;
function check(what, ok, detail) {
  if (ok) { passed++; console.log('ok   ' + what); }
  else { failed++; console.log('FAIL ' + what + ': ' + detail); }
}

// Column metadata and values of one result, or the error, as plain data.
async function result(conn, method, sql, args) {
  try {
    const [rows, fields] = await conn[method]({ sql, values: args, rowsAsArray: true });
    const meta = fields.map(f => ({ name: f.name, type: f.columnType, flags: f.flags,
      decimals: f.decimals, length: f.columnLength, charset: f.characterSet }));
    const vals = rows.map(r => r.map(v => Buffer.isBuffer(v) ? 'hex:' + v.toString('hex')
      : v instanceof Date ? 'date:' + v.toISOString() : v));
    return JSON.stringify({ meta, vals });
  } catch (e) {
    return JSON.stringify({ errno: e.errno, sqlState: e.sqlState, message: e.sqlMessage });
  }
}

async function compare(proxyPort, directPort, method) {
  // A port on 127.0.0.1, or a Unix socket path.
  const opts = to => ({ ...(to.startsWith('/') ? { socketPath: to } : { host: '127.0.0.1', port: Number(to) }),
    user: 'root', password: '', database: 'test', supportBigNumbers: true, bigNumberStrings: true, dateStrings: true });
  const p = await mysql.createConnection(opts(proxyPort));
  const d = await mysql.createConnection(opts(directPort));
  const same = async (what, sql, args) => {
    const x = await result(p, method, sql, args), y = await result(d, method, sql, args);
    check(method + ' ' + what, x === y, x + ' vs ' + y);
  };
  for (let id = 1; id <= 3; id++) {
    await same(`row ${id} (miss)`, 'SELECT * FROM jt WHERE id = ?', [id]);
    await same(`row ${id} (hit)`, 'SELECT * FROM jt WHERE id = ?', [id]);
    const [[last]] = await p.query({ sql: 'SHOW SQLCACHE LAST', rowsAsArray: true });
    check(`${method} row ${id} is a hit`, String(last[1]).startsWith('hit'), last[1]);
  }
  await same('parameters and a range', 'SELECT id, v, CAST(? AS CHAR) AS p FROM jt WHERE id <= ? ORDER BY id', ["x'y", 2]);
  await same('error code and SQLSTATE', 'SELECT * FROM no_such_table WHERE id = ?', [1]);
  await p.end(); await d.end();
}

(async () => {
  const [proxy, direct] = process.argv.slice(2);
  assert(proxy && direct, 'usage: node compare.js PROXY_PORT|PROXY_SOCKET DIRECT_PORT');
  await compare(proxy, direct, 'query');
  await compare(proxy, direct, 'execute');
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
})().catch(e => { console.log('FAIL ' + e.stack); console.log(`${passed} passed, ${failed + 1} failed`); process.exit(1); });

#!/usr/bin/env node
// kqlcheck: an offline check of the KQL queries under infra/monitoring (the
// alert rules and the workbook), with Microsoft's own Kusto parser and
// semantic analyser (Kusto.Language, npm @kusto/language-service-next).
//
// Every .kql file starts with a header naming the tables it reads:
//
//   // table: AppTraces
//
// and is analysed against a database that holds exactly those tables, with
// the columns infra/monitoring/tables.json gives them (copied from the Azure
// Monitor Logs reference). Any diagnostic is a problem: a syntax error, an
// unknown column, table or function, a type mismatch.
//
// It also reports what each query takes from the service's audit lines: the
// variable bound to parse_json(Message) (or todynamic), the fields read
// from it (a.workspace, a["token_id"]), and the event names compared with
// its "event" field (==, =~, !=, in, in~, !in), directly or through a
// column extended from it. The Go tests compare these with internal/audit
// and with the lines the real binary writes.
//
// Usage:
//   node kqlcheck.js [--schema tables.json] PATH...   check .kql files (and
//        directories, recursively); print file:line:col: message; exit 0 or 1
//   node kqlcheck.js --describe [--schema F] PATH...  print JSON, one object
//        per file: {file, tables, audit, events, fields, diagnostics}
//   node kqlcheck.js --cases DIR                       self-test: each
//        DIR/*.kql holds "// expect: TEXT" and must be rejected with TEXT
// Exit 2: the checker itself could not run (usage, missing file, bad schema).
'use strict';

const fs = require('fs');
const path = require('path');

require('@kusto/language-service-next/bridge');
require('@kusto/language-service-next/Kusto.Language.Bridge');

/* global Kusto, Bridge */
const K = Kusto.Language;
const Syn = K.Syntax;
const Sym = K.Symbols;

const DEFAULT_SCHEMA = path.join(__dirname, '..', '..', 'infra', 'monitoring', 'tables.json');
const EVENT_FIELD = 'event';
const CASTS = new Set(['tostring', 'toint', 'tolong', 'toreal', 'todouble', 'tobool', 'todatetime', 'totimespan', 'todynamic', 'trim']);

function die(msg) {
  process.stderr.write(`kqlcheck: ${msg}\n`);
  process.exit(2);
}

function loadSchema(file) {
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    die(`schema ${file}: ${e.message}`);
  }
  if (!doc || typeof doc.tables !== 'object') die(`schema ${file}: no "tables" object`);
  const tables = {};
  for (const [name, t] of Object.entries(doc.tables)) {
    const cols = Object.entries(t.columns || {});
    if (cols.length === 0) die(`schema ${file}: table ${name} has no columns`);
    const schema = '(' + cols.map(([c, type]) => `['${c}']:${type}`).join(', ') + ')';
    tables[name] = new Sym.TableSymbol.$ctor7(name, schema, null);
  }
  return tables;
}

function kqlFiles(args) {
  const out = [];
  const walk = (p) => {
    let st;
    try {
      st = fs.statSync(p);
    } catch (e) {
      die(`${p}: no such file or directory`);
    }
    if (st.isDirectory()) {
      for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    } else if (p.endsWith('.kql')) {
      out.push(p);
    }
  };
  args.forEach(walk);
  return out;
}

// The header: "// table: A, B" lines before the first non-comment line.
function headerValues(text, key) {
  const values = [];
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '') continue;
    if (!t.startsWith('//')) break;
    const m = t.match(new RegExp(`^//\\s*${key}:\\s*(.+)$`));
    if (m) values.push(...m[1].split(',').map((s) => s.trim()).filter(Boolean));
  }
  return values;
}

function lineCol(text, offset) {
  const before = text.slice(0, offset).split('\n');
  return { line: before.length, col: before[before.length - 1].length + 1 };
}

const is = (n, type) => n && Bridge.is(n, type);

// unwrap strips parentheses and casts: tostring((a.event)) -> a.event.
function unwrap(n) {
  for (;;) {
    if (is(n, Syn.ParenthesizedExpression)) n = n.Expression;
    else if (is(n, Syn.FunctionCallExpression) && CASTS.has(n.Name.SimpleName) && n.ArgumentList.Expressions.Count === 1) {
      n = n.ArgumentList.Expressions.getItem(0).Element;
    } else return n;
  }
}

// fieldOf returns the audit field n reads (a.x or a["x"]), else null.
function fieldOf(n, auditVars) {
  if (is(n, Syn.PathExpression) && is(n.Expression, Syn.NameReference) && auditVars.has(n.Expression.SimpleName) &&
      is(n.Selector, Syn.NameReference)) {
    return n.Selector.SimpleName;
  }
  if (is(n, Syn.ElementExpression) && is(n.Expression, Syn.NameReference) && auditVars.has(n.Expression.SimpleName) &&
      is(n.Selector, Syn.BracketedExpression) && is(n.Selector.Expression, Syn.LiteralExpression)) {
    const v = n.Selector.Expression.LiteralValue;
    return typeof v === 'string' ? v : null;
  }
  return null;
}

function stringLiteral(n) {
  n = unwrap(n);
  if (is(n, Syn.LiteralExpression) && typeof n.LiteralValue === 'string') return n.LiteralValue;
  return null;
}

function describe(file, text, allTables) {
  const tables = headerValues(text, 'table');
  const result = { file, tables, audit: [], events: [], fields: [], diagnostics: [] };
  const problem = (offset, message) => {
    const { line, col } = lineCol(text, offset);
    result.diagnostics.push({ line, col, message });
  };
  if (tables.length === 0) problem(0, 'the header names no table (// table: NAME)');
  const symbols = [];
  for (const t of tables) {
    if (!allTables[t]) problem(0, `table ${t} is not in the schema file`);
    else symbols.push(allTables[t]);
  }
  const db = new Sym.DatabaseSymbol.$ctor1('logs', Bridge.toList(symbols), false);
  const globals = K.GlobalState.Default.WithDatabase(db);
  const code = K.KustoCode.ParseAndAnalyze(text, globals);
  for (const d of Bridge.toArray(code.GetDiagnostics())) {
    problem(d.Start, `${d.Code} ${d.Message}`);
  }

  // The audit record variables, and columns that hold its event field.
  const auditVars = new Set();
  const eventVars = new Set();
  Syn.SyntaxElement.WalkNodes(code.Syntax, (n) => {
    if (!is(n, Syn.SimpleNamedExpression)) return;
    const e = unwrap(n.Expression);
    const call = n.Expression;
    if (is(call, Syn.FunctionCallExpression) && ['parse_json', 'todynamic'].includes(call.Name.SimpleName) &&
        call.ArgumentList.Expressions.Count === 1) {
      const arg = unwrap(call.ArgumentList.Expressions.getItem(0).Element);
      if (is(arg, Syn.NameReference) && arg.SimpleName === 'Message') auditVars.add(n.Name.SimpleName);
    }
    if (e && fieldOf(e, auditVars) === EVENT_FIELD) eventVars.add(n.Name.SimpleName);
  });
  const isEvent = (n) => {
    n = unwrap(n);
    return fieldOf(n, auditVars) === EVENT_FIELD || (is(n, Syn.NameReference) && eventVars.has(n.SimpleName));
  };
  const fields = new Set();
  const events = new Set();
  Syn.SyntaxElement.WalkNodes(code.Syntax, (n) => {
    const f = fieldOf(n, auditVars);
    if (f) fields.add(f);
    if (is(n, Syn.BinaryExpression) && ['==', '=~', '!=', '!~'].includes(n.Operator.Text)) {
      for (const [a, b] of [[n.Left, n.Right], [n.Right, n.Left]]) {
        const lit = stringLiteral(b);
        if (isEvent(a) && lit !== null) events.add(lit);
      }
    }
    if (is(n, Syn.InExpression) && isEvent(n.Left)) {
      for (const el of Bridge.toArray(n.Right.Expressions)) {
        const lit = stringLiteral(el.Element);
        if (lit !== null) events.add(lit);
      }
    }
  });
  result.audit = [...auditVars].sort();
  result.fields = [...fields].sort();
  result.events = [...events].sort();
  return result;
}

function main(argv) {
  let mode = 'check';
  let schemaFile = DEFAULT_SCHEMA;
  const paths = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--describe') mode = 'describe';
    else if (a === '--cases') mode = 'cases';
    else if (a === '--schema') schemaFile = argv[++i] || die('--schema needs a file');
    else if (a.startsWith('--')) die(`unknown option ${a}`);
    else paths.push(a);
  }
  if (paths.length === 0) die('usage: kqlcheck.js [--describe] [--schema tables.json] PATH... | --cases DIR');
  const tables = loadSchema(schemaFile);
  const files = kqlFiles(paths);
  if (files.length === 0) die(`no .kql files in ${paths.join(' ')}`);
  const results = files.map((f) => describe(f, fs.readFileSync(f, 'utf8'), tables));

  if (mode === 'describe') {
    process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    return 0;
  }
  if (mode === 'cases') {
    let bad = 0;
    for (const r of results) {
      const expect = headerValues(fs.readFileSync(r.file, 'utf8'), 'expect').join(', ');
      const got = r.diagnostics.map((d) => d.message).join('; ');
      if (!expect) {
        process.stdout.write(`${r.file}: no // expect: line\n`);
        bad++;
      } else if (!got.includes(expect)) {
        process.stdout.write(`${r.file}: want a problem with "${expect}", got: ${got || 'none'}\n`);
        bad++;
      } else {
        process.stdout.write(`${r.file}: rejected as expected (${expect})\n`);
      }
    }
    process.stdout.write(`${results.length - bad} passed, ${bad} failed\n`);
    return bad ? 1 : 0;
  }
  let problems = 0;
  for (const r of results) {
    for (const d of r.diagnostics) {
      process.stdout.write(`${r.file}:${d.line}:${d.col}: ${d.message}\n`);
      problems++;
    }
  }
  process.stdout.write(`kqlcheck: ${problems} problem(s) in ${results.length} file(s)\n`);
  return problems ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));

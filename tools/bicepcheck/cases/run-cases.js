#!/usr/bin/env node
// Runs every case in this folder through bicepcheck.js: good/ must pass,
// every other case must fail with its `expect` text among the problems.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const checker = path.join(__dirname, '..', 'bicepcheck.js');
let passed = 0;
let failed = 0;
for (const name of fs.readdirSync(__dirname).sort()) {
  const dir = path.join(__dirname, name);
  if (!fs.statSync(dir).isDirectory()) continue;
  const expect = fs.readFileSync(path.join(dir, 'expect'), 'utf8').trim();
  const r = spawnSync(process.execPath, [checker, path.join(dir, 'main.bicep')], { encoding: 'utf8' });
  const good = name === 'good';
  const ok = good ? r.status === 0 : r.status === 1 && r.stdout.includes(expect);
  if (ok) passed++;
  else {
    failed++;
    process.stdout.write(`FAIL ${name}: exit ${r.status}, want ${good ? 0 : 1}${good ? '' : ` with "${expect}"`}\n${r.stdout}${r.stderr}`);
  }
}
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exitCode = failed ? 1 : 0;

#!/usr/bin/env node
// bicepcheck: an offline check of Bicep templates, for machines where the Bicep
// CLI cannot be installed. It parses every file with tree-sitter-bicep (WASM,
// through web-tree-sitter) and reports, as `file:line:col: message`:
//
//   1. syntax errors (ERROR and MISSING nodes);
//   2. duplicate top-level symbols;
//   3. local module and import files that do not exist (existing ones are
//      checked too, recursively);
//   4. module calls that miss a required parameter or pass an unknown one;
//   5. resource type strings that are not `Provider/type@yyyy-mm-dd[-suffix]`;
//   6. identifiers that are neither declared (params, vars, resources, modules,
//      types, functions, imports, loop variables, lambda and function
//      parameters) nor Bicep built-ins;
//   7. files that loadTextContent() (loadJsonContent, loadYamlContent,
//      loadFileAsBase64) reads that do not exist;
//   8. secrets as inputs: @secure() parameters, secret-like parameter names;
//      and secrets in app settings: list*() calls (listKeys, ...), shared
//      keys, connection-string settings other than Application Insights'.
//
// It cannot do what only the real compiler does: property and type checks
// against provider schemas, function argument types, linter rules, ARM output.
//
// Usage:
//   node bicepcheck.js FILE.bicep...          check; exit 0 (clean) or 1
//   node bicepcheck.js --app-settings FILE    print the app settings that FILE
//                                             sets, as JSON (for tests)
// Exit 2 means the checker itself could not run (usage, missing file).
//
// tree-sitter-bicep 1.1.0 wrongly rejects a few valid constructs: `extension`,
// the spread operator `...`, typed variables (`var x string = ...`),
// `resourceInput<...>` types, `output x resource ...`, and string literals
// that start with `//` (lexed as a comment). Templates checked here must
// avoid them; the syntax message says so when it sees one.
'use strict';

const fs = require('fs');
const path = require('path');
const Parser = require('web-tree-sitter');

const WASM = require.resolve('tree-sitter-bicep/tree-sitter-bicep.wasm');

// Bicep's built-in functions (sys namespace), from the Bicep functions
// reference. `list*` resource functions are matched by prefix.
const BUILTIN_FUNCTIONS = new Set([
  // any / logical / numeric / conversion
  'any', 'bool', 'int', 'float', 'string', 'json', 'array', 'fail',
  // array and object
  'concat', 'contains', 'empty', 'first', 'last', 'flatten', 'indexOf', 'lastIndexOf', 'intersection',
  'items', 'length', 'max', 'min', 'range', 'skip', 'take', 'union', 'objectKeys', 'shallowMerge',
  'tryGet', 'tryIndexFromEnd',
  // lambda
  'filter', 'map', 'mapValues', 'reduce', 'sort', 'toObject', 'groupBy',
  // date
  'dateTimeAdd', 'dateTimeFromEpoch', 'dateTimeToEpoch', 'utcNow',
  // deployment
  'deployer', 'deployment', 'environment',
  // files
  'loadFileAsBase64', 'loadJsonContent', 'loadYamlContent', 'loadTextContent', 'loadDirectoryFileInfo',
  // parameters files
  'readEnvironmentVariable', 'externalInput',
  // resources
  'extensionResourceId', 'getSecret', 'managementGroupResourceId', 'pickZones', 'providers', 'reference',
  'resourceId', 'subscriptionResourceId', 'tenantResourceId', 'toLogicalZone', 'toPhysicalZone',
  // scope
  'managementGroup', 'resourceGroup', 'subscription', 'tenant',
  // string
  'base64', 'base64ToJson', 'base64ToString', 'dataUri', 'dataUriToString', 'endsWith', 'format', 'guid',
  'join', 'newGuid', 'padLeft', 'replace', 'split', 'startsWith', 'substring', 'toLower', 'toUpper', 'trim',
  'uniqueString', 'uri', 'uriComponent', 'uriComponentToString', 'buildUri', 'parseUri',
  // cidr
  'parseCidr', 'cidrSubnet', 'cidrHost',
  // misc
  'nameof',
]);
const LOAD_FUNCTIONS = new Set(['loadTextContent', 'loadJsonContent', 'loadYamlContent', 'loadFileAsBase64']);
const NAMESPACES = new Set(['az', 'sys']);
const DECORATORS = new Set([
  'description', 'minLength', 'maxLength', 'minValue', 'maxValue', 'allowed', 'secure', 'metadata',
  'batchSize', 'export', 'sealed', 'discriminator', 'onlyIfNotExists', 'retryOn', 'validate',
]);
const BUILTIN_TYPES = new Set(['string', 'int', 'bool', 'object', 'array', 'any', 'resourceInput', 'resourceOutput']);

const RESOURCE_TYPE = /^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9]+)+(\/[A-Za-z0-9]+)+@\d{4}-\d{2}-\d{2}(-[A-Za-z0-9]+)?$/;
const CHILD_RESOURCE_TYPE = /^[A-Za-z0-9]+(\/[A-Za-z0-9]+)*(@\d{4}-\d{2}-\d{2}(-[A-Za-z0-9]+)?)?$/;
const SECRET_PARAM_NAME = /(password|passwd|secret|connectionstring|accountkey|accesskey|sharedkey|sastoken|apikey|credential)/i;
const SHARED_KEY_TEXT = /(AccountKey=|SharedAccessKey=|SharedAccessSignature=)/i;

function isSecretSettingName(name) {
  if (name === 'APPLICATIONINSIGHTS_CONNECTION_STRING') return false; // not a credential with local auth disabled
  if (/(CONNECTION_?STRING|ConnectionString|_KEY$|SECRET|PASSWORD)/i.test(name)) return true;
  // Bare connection settings hold connection strings; identity-based ones use NAME__property.
  return ['AzureWebJobsStorage', 'AzureWebJobsServiceBus', 'ServiceBusConnection', 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'].includes(name);
}

const ESCAPES = { "\\'": "'", '\\\\': '\\', '\\n': '\n', '\\r': '\r', '\\t': '\t', '\\$': '$' };

function pos(node) {
  return { line: node.startPosition.row + 1, col: node.startPosition.column + 1 };
}

function stringValue(node) {
  // The literal text of a string node without interpolation, else null.
  if (!node || node.type !== 'string') return null;
  let out = '';
  for (const c of node.namedChildren) {
    if (c.type === 'interpolation') return null;
    if (c.type === 'string_content') out += c.text;
    else if (c.type === 'escape_sequence') out += ESCAPES[c.text] ?? c.text;
  }
  return out;
}

function firstChildOfType(node, type) {
  for (const c of node.children) if (c.type === type) return c;
  return null;
}

// The object that a resource or module declaration's body is, through
// `if (...) {...}` and `[for ... : {...}]`.
function bodyObject(decl) {
  for (const c of decl.namedChildren) {
    if (c.type === 'object') return c;
    if (c.type === 'if_statement') return firstChildOfType(c, 'object');
    if (c.type === 'for_statement') {
      const b = c.childForFieldName('body');
      if (!b) return null;
      if (b.type === 'object') return b;
      if (b.type === 'if_statement') return firstChildOfType(b, 'object');
    }
  }
  return null;
}

function propertyKey(prop) {
  const k = prop.child(0);
  if (!k) return null;
  if (k.type === 'identifier') return k.text;
  if (k.type === 'compatible_identifier') return k.text;
  if (k.type === 'string') return stringValue(k);
  return null;
}

function propertyValue(prop) {
  // object_property: key ':' value (decorators may come first in types)
  let seenColon = false;
  for (const c of prop.children) {
    if (seenColon && c.isNamed) return c;
    if (c.type === ':') seenColon = true;
  }
  return null;
}

function objectProperty(obj, key) {
  if (!obj || obj.type !== 'object') return null;
  for (const p of obj.namedChildren) {
    if (p.type === 'object_property' && propertyKey(p) === key) return propertyValue(p);
  }
  return null;
}

class Checker {
  constructor(parser) {
    this.parser = parser;
    this.files = new Map(); // absolute path -> analysis
    this.problems = [];
  }

  report(file, node, msg) {
    const p = node ? pos(node) : { line: 1, col: 1 };
    this.problems.push({ file, line: p.line, col: p.col, msg });
  }

  rel(file) {
    const r = path.relative(process.cwd(), file);
    return r && !r.startsWith('..') ? r : file;
  }

  // load parses FILE once and runs the per-file checks; it returns the
  // file's analysis (its parameters, for module-call checks) or null.
  load(file) {
    const abs = path.resolve(file);
    if (this.files.has(abs)) return this.files.get(abs);
    this.files.set(abs, null); // guards against module cycles
    let src;
    try {
      src = fs.readFileSync(abs, 'utf8');
    } catch (e) {
      return null;
    }
    const tree = this.parser.parse(src);
    const a = { file: this.rel(abs), dir: path.dirname(abs), root: tree.rootNode, params: new Map(), syntaxOK: true, src };
    this.files.set(abs, a);
    this.checkSyntax(a);
    this.collectDeclarations(a);
    if (a.syntaxOK) {
      this.checkDecorators(a);
      this.checkResourceTypes(a);
      this.checkModules(a);
      this.checkLoadedFiles(a);
      this.checkIdentifiers(a);
      this.checkSecrets(a);
    }
    return a;
  }

  checkSyntax(a) {
    let count = 0;
    const visit = (n) => {
      if (count >= 5) return;
      if (n.type === 'ERROR' || n.isMissing) {
        a.syntaxOK = false;
        count++;
        const text = n.text.trim();
        let msg;
        if (n.isMissing) msg = `syntax error: missing ${n.type}`;
        else msg = `syntax error near ${JSON.stringify(text.length > 40 ? text.slice(0, 40) + '…' : text)}`;
        if (/^extension\b/.test(text) || text.includes('...') || /resourceInput</.test(text) || /^var\s+\w+\s+\w+\s*=/.test(text) || /^output\s+\w+\s+resource\b/.test(text)) {
          msg += ' (this may be valid Bicep that tree-sitter-bicep 1.1.0 rejects: extension, spread, typed var, resourceInput<>, output resource; avoid the construct)';
        }
        if (count === 1 && /'\/\//.test(a.src)) {
          msg += " (tree-sitter-bicep 1.1.0 lexes a string that starts with // as a comment: rewrite such strings, e.g. split(x, '/') instead of split(x, '//'))";
        }
        this.report(a.file, n, msg);
        return;
      }
      if (!n.hasError && !n.isMissing) return; // hasError covers missing descendants too
      for (const c of n.children) visit(c);
    };
    visit(a.root);
    if (a.root.hasError && count === 0) {
      a.syntaxOK = false;
      this.report(a.file, a.root, 'syntax error');
    }
  }

  collectDeclarations(a) {
    a.symbols = new Map(); // name -> {node, kind}
    a.outputs = new Map();
    a.types = new Set();
    a.funcs = new Set();
    const declare = (map, nameNode, kind) => {
      if (!nameNode) return;
      const name = nameNode.text;
      if (map.has(name)) {
        const first = map.get(name);
        this.report(a.file, nameNode, `duplicate symbol '${name}' (first declared as ${first.kind} at line ${pos(first.node).line})`);
        return;
      }
      map.set(name, { node: nameNode, kind });
    };
    for (const n of a.root.namedChildren) {
      switch (n.type) {
        case 'parameter_declaration': {
          const id = firstChildOfType(n, 'identifier');
          declare(a.symbols, id, 'param');
          if (id) {
            const t = firstChildOfType(n, 'type');
            const nullable = !!(t && t.namedChildren.some((c) => c.type === 'nullable_type'));
            const hasDefault = n.children.some((c) => c.type === '=');
            a.params.set(id.text, { required: !nullable && !hasDefault, node: id });
          }
          break;
        }
        case 'variable_declaration': declare(a.symbols, firstChildOfType(n, 'identifier'), 'var'); break;
        case 'resource_declaration': declare(a.symbols, firstChildOfType(n, 'identifier'), 'resource'); break;
        case 'module_declaration': declare(a.symbols, firstChildOfType(n, 'identifier'), 'module'); break;
        case 'type_declaration': {
          const id = firstChildOfType(n, 'identifier');
          declare(a.symbols, id, 'type');
          if (id) a.types.add(id.text);
          break;
        }
        case 'user_defined_function': {
          const id = n.childForFieldName('name');
          declare(a.symbols, id, 'func');
          if (id) a.funcs.add(id.text);
          break;
        }
        case 'import_functionality':
        case 'import_statement':
        case 'import_with_statement': {
          const kids = n.children;
          for (let i = 0; i < kids.length; i++) {
            if (kids[i].type !== 'identifier') continue;
            const aliased = kids[i + 1] && kids[i + 1].type === 'as';
            if (!aliased) {
              declare(a.symbols, kids[i], 'import');
              // imported names may be types or functions as well as values
              a.types.add(kids[i].text);
              a.funcs.add(kids[i].text);
            }
          }
          const file = firstChildOfType(n, 'string');
          const spec = stringValue(file);
          if (n.type === 'import_functionality' && spec && !/^(br|ts)[:/]/.test(spec)) {
            const target = path.resolve(a.dir, spec);
            if (!fs.existsSync(target)) this.report(a.file, file, `imported file not found: ${spec}`);
            else if (target.endsWith('.bicep')) this.load(target);
          }
          break;
        }
        case 'output_declaration': declare(a.outputs, firstChildOfType(n, 'identifier'), 'output'); break;
        default: break;
      }
    }
  }

  // decoratedDeclarations yields [decoratorsNode, declarationNode] pairs at the top level.
  * decorated(a) {
    const kids = a.root.namedChildren;
    for (let i = 0; i < kids.length; i++) {
      if (kids[i].type === 'decorators' && kids[i + 1]) yield [kids[i], kids[i + 1]];
    }
  }

  decoratorName(dec) {
    const call = firstChildOfType(dec, 'call_expression');
    if (!call) return { name: null, node: dec };
    const fn = call.childForFieldName('function');
    if (fn && fn.type === 'identifier') return { name: fn.text, node: fn, call };
    if (fn && fn.type === 'member_expression') {
      const obj = fn.childForFieldName('object');
      const prop = fn.childForFieldName('property');
      if (obj && obj.text === 'sys' && prop) return { name: prop.text, node: fn, call };
      return { name: fn.text, node: fn, call };
    }
    return { name: null, node: dec };
  }

  checkDecorators(a) {
    for (const [decs, decl] of this.decorated(a)) {
      for (const dec of decs.namedChildren) {
        const { name, node } = this.decoratorName(dec);
        if (name && !DECORATORS.has(name)) this.report(a.file, node, `unknown decorator '@${name}'`);
        if (name === 'secure' && decl.type === 'parameter_declaration') {
          const id = firstChildOfType(decl, 'identifier');
          this.report(a.file, id || decl, `parameter '${id ? id.text : '?'}' is @secure(): templates must not take secrets as parameters (use managed identity or Key Vault references)`);
        }
      }
    }
  }

  checkResourceTypes(a) {
    const visit = (n, nested) => {
      if (n.type === 'resource_declaration') {
        const t = firstChildOfType(n, 'string');
        const v = stringValue(t);
        if (v === null) this.report(a.file, t || n, 'resource type must be a plain string');
        else if (!nested && !RESOURCE_TYPE.test(v)) this.report(a.file, t, `resource type '${v}' is not 'Provider.Namespace/type@yyyy-mm-dd[-suffix]'`);
        else if (nested && !RESOURCE_TYPE.test(v) && !CHILD_RESOURCE_TYPE.test(v)) this.report(a.file, t, `nested resource type '${v}' is not 'childType[@yyyy-mm-dd]' or a full type`);
        const body = bodyObject(n);
        if (body) for (const p of body.namedChildren) for (const c of p.namedChildren) if (c.type === 'resource_declaration') visit(c, true);
        return;
      }
      for (const c of n.namedChildren) visit(c, nested);
    };
    for (const n of a.root.namedChildren) visit(n, false);
  }

  // checkLoadedFiles: the files loadTextContent() and its siblings read at
  // compile time must exist (the alert and workbook queries are such files).
  checkLoadedFiles(a) {
    const visit = (n) => {
      if (n.type === 'call_expression') {
        const fn = n.childForFieldName('function');
        const args = n.childForFieldName('arguments');
        if (fn && LOAD_FUNCTIONS.has(fn.text) && args) {
          const first = args.namedChildren[0];
          const spec = stringValue(first);
          if (spec === null) this.report(a.file, first || n, `${fn.text}() needs a plain string path`);
          else if (!fs.existsSync(path.resolve(a.dir, spec)) || !fs.statSync(path.resolve(a.dir, spec)).isFile()) {
            this.report(a.file, first, `${fn.text}() file not found: ${spec}`);
          }
        }
      }
      for (const c of n.namedChildren) visit(c);
    };
    visit(a.root);
  }

  checkModules(a) {
    for (const n of a.root.namedChildren) {
      if (n.type !== 'module_declaration') continue;
      const name = firstChildOfType(n, 'identifier');
      const pathNode = firstChildOfType(n, 'string');
      const spec = stringValue(pathNode);
      if (spec === null) {
        this.report(a.file, pathNode || n, 'module path must be a plain string');
        continue;
      }
      if (/^(br|ts)[:/]/.test(spec)) continue; // registry and template-spec modules: not available offline
      const target = path.resolve(a.dir, spec);
      if (!fs.existsSync(target) || !fs.statSync(target).isFile()) {
        this.report(a.file, pathNode, `module file not found: ${spec}`);
        continue;
      }
      if (!target.endsWith('.bicep')) continue; // ARM JSON modules: not checked
      const m = this.load(target);
      if (!m || !m.syntaxOK) continue;
      const body = bodyObject(n);
      if (!body) continue;
      const params = objectProperty(body, 'params');
      const modName = name ? name.text : spec;
      if (params && params.type !== 'object') continue; // computed params: cannot check
      const passed = new Map();
      if (params) {
        for (const p of params.namedChildren) {
          if (p.type !== 'object_property') continue;
          const k = propertyKey(p);
          if (k === null) continue;
          passed.set(k, p);
          if (!m.params.has(k)) this.report(a.file, p, `module '${modName}': unknown parameter '${k}' (not declared in ${spec})`);
        }
      }
      for (const [pn, info] of m.params) {
        if (info.required && !passed.has(pn)) {
          this.report(a.file, params || name || n, `module '${modName}': required parameter '${pn}' of ${spec} is not passed`);
        }
      }
    }
  }

  checkIdentifiers(a) {
    const globals = a.symbols;
    const has = (scopes, name) => scopes.some((s) => s.has(name));
    const check = (id, scopes, kind) => {
      const name = id.text;
      if (kind === 'type') {
        if (BUILTIN_TYPES.has(name) || a.types.has(name)) return;
        this.report(a.file, id, `undeclared type '${name}'`);
        return;
      }
      if (kind === 'call') {
        if (BUILTIN_FUNCTIONS.has(name) || a.funcs.has(name) || /^list[A-Z]/.test(name) || name === 'list') return;
        if (has(scopes, name)) return; // e.g. an imported function
        this.report(a.file, id, `unknown function '${name}'`);
        return;
      }
      if (has(scopes, name) || globals.has(name) || NAMESPACES.has(name)) return;
      if (BUILTIN_FUNCTIONS.has(name)) {
        this.report(a.file, id, `'${name}' is a function; call it as ${name}(...)`);
        return;
      }
      this.report(a.file, id, `undeclared identifier '${name}'`);
    };

    const lambdaParams = (node, out) => {
      if (node.type === 'lambda_expression') {
        const head = node.namedChild(0);
        if (head && head.type === 'identifier') out.add(head.text);
        else if (head) for (const c of head.namedChildren) if (c.type === 'identifier') out.add(c.text);
      }
      for (const c of node.namedChildren) lambdaParams(c, out);
      return out;
    };

    const walk = (n, scopes, ctx) => {
      switch (n.type) {
        case 'comment':
        case 'diagnostic_comment':
        case 'string_content':
        case 'escape_sequence':
        case 'property_identifier':
        case 'loop_variable':
        case 'loop_enumerator':
        case 'primitive_type':
        case 'compatible_identifier':
        case 'test_block':
        case 'using_statement':
        case 'import_functionality':
        case 'import_statement':
        case 'import_with_statement':
          return;
        case 'identifier':
          check(n, scopes, ctx);
          return;
        case 'parameter_declaration':
        case 'variable_declaration':
        case 'output_declaration':
        case 'type_declaration':
        case 'metadata_declaration':
        case 'assert_statement':
        case 'module_declaration': {
          let skipped = false;
          for (const c of n.namedChildren) {
            if (!skipped && c.type === 'identifier') { skipped = true; continue; }
            walk(c, scopes, n.type === 'type_declaration' ? 'type' : 'value');
          }
          return;
        }
        case 'resource_declaration': {
          // nested resources are visible by name inside their parent's body
          const local = new Set();
          const body = bodyObject(n);
          if (body) for (const p of body.namedChildren) for (const c of p.namedChildren) {
            if (c.type === 'resource_declaration') { const id = firstChildOfType(c, 'identifier'); if (id) local.add(id.text); }
          }
          let skipped = false;
          for (const c of n.namedChildren) {
            if (!skipped && c.type === 'identifier') { skipped = true; continue; }
            walk(c, [...scopes, local], 'value');
          }
          return;
        }
        case 'user_defined_function': {
          const local = new Set();
          const ps = firstChildOfType(n, 'parameters');
          if (ps) for (const p of ps.namedChildren) {
            const id = firstChildOfType(p, 'identifier');
            if (id) local.add(id.text);
            const t = firstChildOfType(p, 'type');
            if (t) walk(t, scopes, 'type');
          }
          const name = n.childForFieldName('name');
          const ret = n.childForFieldName('returns');
          for (const c of n.namedChildren) {
            if (c === name || c === ps) continue;
            if (ret && c.id === ret.id) { walk(c, scopes, 'type'); continue; }
            walk(c, [...scopes, local], 'value');
          }
          return;
        }
        case 'type':
        case 'nullable_type':
        case 'array_type':
        case 'union_type':
        case 'parenthesized_type':
        case 'negated_type':
          for (const c of n.namedChildren) walk(c, scopes, 'type');
          return;
        case 'parameterized_type':
          return; // resourceInput<'...'> and friends
        case 'object_property': {
          const key = n.child(0);
          for (const c of n.namedChildren) {
            if (c.id === key.id && (c.type === 'identifier' || c.type === 'string' || c.type === 'compatible_identifier')) {
              if (c.type === 'string') walk(c, scopes, 'value'); // interpolated keys
              continue;
            }
            walk(c, scopes, ctx);
          }
          return;
        }
        case 'for_statement': {
          const local = new Set();
          const init = n.childForFieldName('initializer');
          if (init) local.add(init.text);
          const lp = firstChildOfType(n, 'for_loop_parameters');
          if (lp) for (const c of lp.namedChildren) local.add(c.text);
          for (const c of n.namedChildren) {
            if (init && c.id === init.id) continue;
            walk(c, [...scopes, local], 'value');
          }
          return;
        }
        case 'arguments':
          // tree-sitter-bicep 1.1.0 binds `x => x.a + x.b` as `(x => x).a + x.b`, so
          // lambda parameters are in scope for the whole argument they appear in.
          for (const c of n.namedChildren) {
            const local = lambdaParams(c, new Set());
            walk(c, local.size ? [...scopes, local] : scopes, 'value');
          }
          return;
        case 'lambda_expression': {
          const head = n.namedChild(0);
          for (const c of n.namedChildren) if (c.id !== head.id) walk(c, scopes, 'value');
          return;
        }
        case 'call_expression': {
          const fn = n.childForFieldName('function');
          if (fn && fn.type === 'identifier') check(fn, scopes, 'call');
          else if (fn) walk(fn, scopes, 'value');
          for (const c of n.namedChildren) if (!fn || c.id !== fn.id) walk(c, scopes, 'value');
          return;
        }
        case 'decorator': {
          const call = firstChildOfType(n, 'call_expression');
          if (!call) return;
          const args = call.childForFieldName('arguments');
          if (args) walk(args, scopes, 'value');
          return;
        }
        case 'member_expression': {
          const obj = n.childForFieldName('object');
          if (obj) walk(obj, scopes, ctx === 'type' ? 'type' : 'value');
          return;
        }
        case 'resource_expression': {
          const obj = n.childForFieldName('object');
          if (obj) walk(obj, scopes, 'value');
          return;
        }
        default:
          for (const c of n.namedChildren) walk(c, scopes, ctx);
      }
    };
    walk(a.root, [], 'value');
  }

  checkSecrets(a) {
    for (const n of a.root.namedChildren) {
      if (n.type !== 'parameter_declaration') continue;
      const id = firstChildOfType(n, 'identifier');
      if (id && SECRET_PARAM_NAME.test(id.text)) {
        this.report(a.file, id, `parameter '${id.text}' looks like a secret: templates must not take secrets as parameters`);
      }
    }
    const visit = (n) => {
      if (n.type === 'string_content' && SHARED_KEY_TEXT.test(n.text)) {
        this.report(a.file, n, 'shared-key credential text in a template: use identity-based access');
      }
      for (const c of n.children) visit(c);
    };
    visit(a.root);
    for (const s of appSettings(a)) {
      if (isSecretSettingName(s.name)) {
        this.report(a.file, s.node, `app setting '${s.name}' is a connection string or secret: use identity-based settings (NAME__fullyQualifiedNamespace, NAME__credential, NAME__clientId)`);
      }
      const bad = findListCall(s.value, a);
      if (bad) this.report(a.file, bad, `app setting '${s.name}' uses ${listCallName(bad)}(): no keys in app settings`);
    }
  }
}

function listCallName(call) {
  const fn = call.childForFieldName('function');
  if (!fn) return 'list';
  return fn.type === 'member_expression' ? (fn.childForFieldName('property') || fn).text : fn.text;
}

// findListCall finds a list*() call (listKeys, listConnectionStrings, ...) in
// an app setting's value, following variable references in the same file.
function findListCall(node, a, seen = new Set()) {
  if (!node) return null;
  if (node.type === 'call_expression') {
    if (/^list/.test(listCallName(node))) return node;
  }
  if (node.type === 'identifier' && !seen.has(node.text)) {
    seen.add(node.text);
    const v = varValue(a, node.text);
    if (v) { const r = findListCall(v, a, seen); if (r) return r; }
  }
  for (const c of node.namedChildren) {
    const r = findListCall(c, a, seen);
    if (r) return r;
  }
  return null;
}

function varValue(a, name) {
  for (const n of a.root.namedChildren) {
    if (n.type !== 'variable_declaration') continue;
    const id = firstChildOfType(n, 'identifier');
    if (id && id.text === name) {
      const kids = n.namedChildren;
      return kids[kids.length - 1];
    }
  }
  return null;
}

// objectKeys lists the keys an expression evaluates to when it is built from
// object literals, union(), ternaries, parentheses and variables holding them.
function objectKeys(node, a, out, seen = new Set()) {
  if (!node) return out;
  switch (node.type) {
    case 'object':
      for (const p of node.namedChildren) {
        if (p.type !== 'object_property') continue;
        const k = propertyKey(p);
        if (k !== null) out.push({ name: k, node: p, value: propertyValue(p) });
      }
      break;
    case 'call_expression': {
      const fn = node.childForFieldName('function');
      if (fn && /^(union|shallowMerge)$/.test(fn.text)) {
        const args = node.childForFieldName('arguments');
        if (args) for (const c of args.namedChildren) objectKeys(c, a, out, seen);
      }
      break;
    }
    case 'ternary_expression':
      objectKeys(node.childForFieldName('consequence'), a, out, seen);
      objectKeys(node.childForFieldName('alternative'), a, out, seen);
      break;
    case 'parenthesized_expression':
      for (const c of node.namedChildren) objectKeys(c, a, out, seen);
      break;
    case 'identifier':
      if (!seen.has(node.text)) {
        seen.add(node.text);
        objectKeys(varValue(a, node.text), a, out, seen);
      }
      break;
    default:
      break;
  }
  return out;
}

// appSettings finds the app settings a file sets: the `properties` of
// Microsoft.Web/sites/config resources named 'appsettings' (top-level or
// nested), and siteConfig.appSettings arrays of {name, value} on sites.
function appSettings(a) {
  const out = [];
  const visit = (n, nested) => {
    if (n.type === 'resource_declaration') {
      const type = stringValue(firstChildOfType(n, 'string')) || '';
      const body = bodyObject(n);
      const name = body ? stringValue(objectProperty(body, 'name')) : null;
      const isConfig = /^Microsoft\.Web\/sites\/config@/i.test(type) || (nested && /^config(@|$)/i.test(type));
      if (isConfig && name === 'appsettings') objectKeys(objectProperty(body, 'properties'), a, out);
      if (/^Microsoft\.Web\/sites@/i.test(type) && body) {
        const sc = objectProperty(objectProperty(body, 'properties'), 'siteConfig');
        const arr = objectProperty(sc, 'appSettings');
        if (arr && arr.type === 'array') {
          for (const item of arr.namedChildren) {
            const nm = stringValue(objectProperty(item, 'name'));
            if (nm) out.push({ name: nm, node: item, value: objectProperty(item, 'value') });
          }
        }
      }
      if (body) for (const p of body.namedChildren) for (const c of p.namedChildren) if (c.type === 'resource_declaration') visit(c, true);
      return;
    }
    for (const c of n.namedChildren) visit(c, nested);
  };
  visit(a.root, false);
  return out;
}

async function newParser() {
  await Parser.init();
  const lang = await Parser.Language.load(WASM);
  const parser = new Parser();
  parser.setLanguage(lang);
  return parser;
}

async function main(argv) {
  const args = argv.slice(2);
  if (args[0] === '--app-settings') {
    if (args.length !== 2) {
      process.stderr.write('usage: bicepcheck.js --app-settings FILE.bicep\n');
      return 2;
    }
    if (!fs.existsSync(args[1])) {
      process.stderr.write(`${args[1]}: no such file\n`);
      return 2;
    }
    const c = new Checker(await newParser());
    const a = c.load(args[1]);
    if (!a.syntaxOK) {
      for (const p of c.problems) process.stderr.write(`${p.file}:${p.line}:${p.col}: ${p.msg}\n`);
      return 1;
    }
    const settings = appSettings(a).map((s) => ({ name: s.name, line: pos(s.node).line }));
    process.stdout.write(JSON.stringify({ file: a.file, settings }, null, 1) + '\n');
    return 0;
  }
  if (args.length === 0 || args.some((x) => x.startsWith('-'))) {
    process.stderr.write('usage: bicepcheck.js FILE.bicep... | --app-settings FILE.bicep\n');
    return 2;
  }
  for (const f of args) {
    if (!fs.existsSync(f)) {
      process.stderr.write(`${f}: no such file\n`);
      return 2;
    }
  }
  const c = new Checker(await newParser());
  for (const f of args) c.load(f);
  const seen = new Set();
  const problems = c.problems
    .sort((x, y) => (x.file < y.file ? -1 : x.file > y.file ? 1 : x.line - y.line || x.col - y.col))
    .filter((p) => { const k = `${p.file}:${p.line}:${p.col}: ${p.msg}`; if (seen.has(k)) return false; seen.add(k); return true; });
  for (const p of problems) process.stdout.write(`${p.file}:${p.line}:${p.col}: ${p.msg}\n`);
  const n = [...c.files.values()].filter(Boolean).length;
  if (problems.length) {
    process.stdout.write(`${problems.length} problem(s) in ${n} file(s)\n`);
    return 1;
  }
  process.stdout.write(`ok: ${n} file(s), no problems\n`);
  return 0;
}

if (require.main === module) {
  main(process.argv).then((code) => { process.exitCode = code; }, (err) => {
    process.stderr.write(`bicepcheck: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 2;
  });
}

module.exports = { main };

// Runs Azurite's table service (the package's own azurite-table entry, with
// the arguments given) and exits when stdin closes, so a test process that
// dies, even by SIGKILL, never leaves the emulator running behind it.
"use strict";
process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
require("azurite/dist/src/table/main.js");

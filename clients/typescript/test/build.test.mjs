// What is committed is what the pinned tools make: dist/ is exactly the
// pinned tsc's output of src/, and the browser bundle the gateway embeds
// (web/vendor) is byte for byte the pinned socket.io-client's. Every npm
// version is pinned exactly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const repo = join(root, "..", "..");

test("dist/ is what the pinned tsc makes of src/", () => {
  const out = mkdtempSync(join(tmpdir(), "sdk-dist-"));
  try {
    execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", root, "--outDir", out], { stdio: "inherit" });
    const built = readdirSync(out).sort();
    assert.deepEqual(readdirSync(join(root, "dist")).sort(), built, "the same files");
    for (const f of built) {
      assert.ok(readFileSync(join(out, f)).equals(readFileSync(join(root, "dist", f))), `dist/${f} differs: run \`npm run build\` in clients/typescript`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("web/vendor/socket.io.esm.min.js is the pinned socket.io-client's own bundle", () => {
  const pkg = JSON.parse(readFileSync(join(root, "node_modules/socket.io-client/package.json"), "utf8"));
  assert.equal(pkg.version, "4.8.1");
  const installed = readFileSync(join(root, "node_modules/socket.io-client/dist/socket.io.esm.min.js"));
  const vendored = readFileSync(join(repo, "web/vendor/socket.io.esm.min.js"));
  assert.ok(vendored.equals(installed), "web/vendor/socket.io.esm.min.js differs from the installed package's file");
});

test("every npm dependency is pinned to one version", () => {
  for (const file of ["clients/typescript/package.json", "tests/browser/package.json", "tests/js/package.json"]) {
    const pkg = JSON.parse(readFileSync(join(repo, file), "utf8"));
    for (const [name, range] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies })) {
      assert.match(range, /^\d+\.\d+\.\d+$/, `${file}: ${name} must be pinned exactly (got ${range})`);
    }
  }
  const typescript = JSON.parse(readFileSync(join(root, "node_modules/typescript/package.json"), "utf8"));
  assert.equal(typescript.version, JSON.parse(readFileSync(join(root, "package.json"), "utf8")).devDependencies.typescript);
});

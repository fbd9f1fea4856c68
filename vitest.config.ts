import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The JSON report lets .ci/run print the plain "N passed, N failed" line.
    reporters: ['default', ['json', { outputFile: 'vitest.json' }]],
    // The compiled build (dist/) is loaded by Node itself, not transformed: transformed modules turn every
    // imported constant into a property load, which makes the interpreter several times slower.
    server: { deps: { external: [/\/dist\//] } },
  },
});

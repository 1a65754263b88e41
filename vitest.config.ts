import { readdirSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// One project per package (tests in packages/<name>/test mirror src/), plus the end-to-end
// tests of runbooks in test/. Files run in parallel across workers; sandbox servers take
// random ports, so packages never clash.
const packages = readdirSync(new URL('./packages', import.meta.url), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);

export default defineConfig({
  resolve: {
    // Workspace packages resolve to their TypeScript source: tests never run stale builds.
    conditions: ['@drkit/source'],
  },
  ssr: {
    resolve: { conditions: ['@drkit/source'], externalConditions: ['@drkit/source'] },
  },
  test: {
    setupFiles: ['./vitest.setup.ts'],
    globalSetup: ['./vitest.global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', ['json', { outputFile: 'reports/vitest.json' }]],
    projects: [
      ...packages.map((name) => ({
        extends: true as const,
        test: { name, include: [`packages/${name}/test/**/*.test.ts`] },
      })),
      { extends: true as const, test: { name: 'e2e', include: ['test/**/*.test.ts'] } },
      { extends: true as const, test: { name: 'bench', include: ['bench/**/*.test.ts'] } },
    ],
  },
});

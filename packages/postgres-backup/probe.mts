import { readdirSync } from 'node:fs';
import { generateKey, masterKey } from '@drkit/crypto-stream';
import { createCatalog, createFsStore } from '@drkit/s3-store';
import { startPostgres } from '@drkit/sandbox';
import { backupBase, walFetch, walPush } from './src/index.ts';

const pgs = await startPostgres({ settings: { archive_mode: 'on', archive_command: 'true' } });
try {
  const store = createFsStore('/tmp/pitr/store');
  const catalog = createCatalog(store);
  const keys = masterKey(generateKey());
  const t0 = performance.now();
  const r = await backupBase({ url: pgs.url(), catalog, keys });
  console.log(performance.now() - t0, JSON.stringify(r.base, null, 1), r.manifest.object.size, r.manifest.plainSize);
  const wal = readdirSync(pgs.dataDir + '/pg_wal');
  console.log(wal);
  const seg = wal.find((n) => /^[0-9A-F]{24}$/.test(n))!;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    console.log(await walPush(pgs.dataDir + '/pg_wal/' + seg, { store, keys, dataDir: pgs.dataDir }), performance.now() - t);
  }
  await walFetch(seg, '/tmp/pitr/fetched', { store, keys, dataDir: pgs.dataDir });
  console.log('fetched ok');
} finally {
  await pgs.stop();
}

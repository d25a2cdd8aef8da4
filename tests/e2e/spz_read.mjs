// Read an .spz with the independent npm reader spz-js and print what it decoded as JSON.
// Usage: node tests/e2e/spz_read.mjs FILE.spz
// Output: {numPoints, shDegree, antialiased, stats: {attr: {min, max, mean}}, and, for files of at
// most 20000 points, the decoded arrays (positions xyz, scales log, rotations xyzw, alphas logit,
// colors SH-DC, sh) exactly as spz-js returns them (the spec's stored axes, no conversion)}.
import { readFileSync } from 'fs';
import { loadSpz } from 'spz-js';

const file = process.argv[2];
if (!file) {
  console.error('usage: node spz_read.mjs FILE.spz');
  process.exit(2);
}
const cloud = await loadSpz(readFileSync(file));
if (!cloud) {
  console.error(`spz-js could not read ${file}`);
  process.exit(1);
}
const attrs = ['positions', 'scales', 'rotations', 'alphas', 'colors', 'sh'];
const stats = {};
for (const a of attrs) {
  const v = cloud[a];
  let min = Infinity, max = -Infinity, sum = 0;
  for (let i = 0; i < v.length; i++) { min = Math.min(min, v[i]); max = Math.max(max, v[i]); sum += v[i]; }
  stats[a] = { length: v.length, min, max, mean: v.length ? sum / v.length : 0 };
}
const out = { numPoints: cloud.numPoints, shDegree: cloud.shDegree, antialiased: cloud.antialiased, stats };
if (cloud.numPoints <= 20000) {
  for (const a of attrs) out[a] = Array.from(cloud[a]);
}
process.stdout.write(JSON.stringify(out));

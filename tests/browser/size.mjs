// The size of hookcast.js as a page pays for it: minified with terser (a devDependency used for
// this measurement only; the daemon serves the file as written) and gzipped at level 9.
// Usage: node size.mjs   (prints raw, minified and minified+gzipped bytes)
import { minify } from 'terser';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const SOURCE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/browser/hookcast.js');

export async function measure() {
  const raw = fs.readFileSync(SOURCE, 'utf8');
  const min = (await minify(raw, { compress: true, mangle: true, ecma: 2020 })).code;
  const gz = (s) => zlib.gzipSync(s, { level: 9 }).length;
  return { raw: raw.length, rawGzip: gz(raw), min: min.length, minGzip: gz(min) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = await measure();
  console.log(`hookcast.js: ${s.raw} bytes, ${s.rawGzip} gzipped; minified ${s.min}, minified+gzipped ${s.minGzip}`);
}

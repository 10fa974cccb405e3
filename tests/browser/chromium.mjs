// The Chromium every browser test drives: where it is (CHROMIUM overrides Debian's path) and
// the flags that keep a headless run quiet and offline.
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

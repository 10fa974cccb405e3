// The real daemon for a browser test: `hookcast serve` with a config on an ephemeral loopback
// port, its log kept for the failure message. `start` resolves with the daemon once its
// "listening on" line names the address.
import { spawn } from 'node:child_process';

export function start(bin, configFile, { args = [], env = {} } = {}) {
  const d = { child: null, log: '', url: null };
  d.child = spawn(bin, ['serve', '--config', configFile, '--listen', '127.0.0.1:0', ...args],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HOOKCAST_LOG: 'info', ...env } });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no "listening on" line in 10 s')), 10000);
    d.child.stderr.setEncoding('utf8');
    d.child.stderr.on('data', (s) => {
      d.log += s;
      const m = d.log.match(/listening on http:\/\/(\S+)/);
      if (m && !d.url) { d.url = `http://${m[1]}`; clearTimeout(timer); resolve(d); }
    });
    d.child.on('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`hookcast exited (${code ?? sig})`)); });
  });
}

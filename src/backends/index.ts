// Backend registry: pick a backend by name. 'auto' is cpu when its addon is built, else ref.

import type { Backend } from '../tensor/backend.js';
import { refBackend } from './ref/index.js';
import { loadCpuBackend } from './cpu/index.js';
import { OptionError, UserError } from '../errors.js';

export type BackendName = 'ref' | 'cpu' | 'auto';

/** The backend called `name`; 'cpu' when the addon is not available is a UserError carrying the reason. */
export function getBackend(name: BackendName): Backend {
  switch (name) {
    case 'ref':
      return refBackend;
    case 'cpu': {
      const cpu = loadCpuBackend();
      if (!cpu.available) throw new OptionError('backend', 'cpu', `the native cpu backend is not available: ${cpu.reason}`);
      return cpu;
    }
    case 'auto': {
      const cpu = loadCpuBackend();
      return cpu.available ? cpu : refBackend;
    }
    default: {
      const never: never = name;
      throw new UserError(`unknown backend '${String(never)}' (expected ref, cpu or auto)`);
    }
  }
}

/** Names of the backends that can run here ('ref' always, 'cpu' when its addon loads). */
export function availableBackends(): BackendName[] {
  return loadCpuBackend().available ? ['ref', 'cpu'] : ['ref'];
}

/** Every backend with whether it can run here and, when not, why (for `mla info` and test skip messages). */
export function backendStatus(): { name: 'ref' | 'cpu'; available: boolean; reason?: string }[] {
  const cpu = loadCpuBackend();
  return [
    { name: 'ref', available: true },
    cpu.available ? { name: 'cpu', available: true } : { name: 'cpu', available: false, reason: cpu.reason },
  ];
}

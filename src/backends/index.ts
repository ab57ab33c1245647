// Backend registry: pick a backend by name. 'auto' is cpu when its addon is built, else ref.

import type { Backend } from '../tensor/backend.js';
import { refBackend } from './ref/index.js';
import { UserError } from '../io/errors.js';

export type BackendName = 'ref' | 'cpu' | 'auto';

export function getBackend(name: BackendName): Backend {
  if (name === 'ref' || name === 'auto') return refBackend;
  throw new UserError('--backend cpu: the native cpu backend is not available');
}

export function availableBackends(): string[] {
  return ['ref'];
}

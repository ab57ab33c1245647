// The memory members every host backend (ref, cpu) shares: buffers are JS typed arrays charged to the backend's
// pool, transfers are no-ops that hand over the array itself, and sync has nothing to wait for.

import type { Backend } from '../tensor/backend.js';
import { BufferPool, Storage, arrayFits, type DType, type HostArray } from '../tensor/storage.js';
import { Tensor, allocData, sizeOf } from '../tensor/tensor.js';

export type HostMemoryMembers = Pick<Backend, 'host' | 'allocate' | 'free' | 'upload' | 'download' | 'sync' | 'memory'>;

/** allocate / free / upload / download / sync / memory of a host backend whose buffers belong to `pool`. */
export function hostMemory(pool: BufferPool): HostMemoryMembers {
  return {
    host: true,
    allocate(shape: readonly number[], dtype: DType): Tensor {
      const n = sizeOf(shape);
      return new Tensor(shape, new Storage(dtype, n, allocData(dtype, n), pool));
    },
    free(t: Tensor): void {
      t.dispose();
    },
    upload(shape: readonly number[], dtype: DType, values: HostArray): Tensor {
      if (!arrayFits(values, dtype)) throw new Error(`${pool.name}.upload: a ${values.constructor.name} cannot hold ${dtype}`);
      return new Tensor(shape, new Storage(dtype, sizeOf(shape), values, pool));
    },
    download(t: Tensor): HostArray {
      return t.storage.host();
    },
    sync(): void {},
    memory() {
      return pool.stats();
    },
  };
}


// Open a model for a command: read it with io/, pick the backend, build the Model.

import type { Backend } from '../tensor/backend.js';
import { getBackend } from '../backends/index.js';
import { loadModel } from '../io/load.js';
import type { Tokenizer } from '../io/tokenizer.js';
import { OptionError, UserError } from '../errors.js';
import { Model } from '../model/model.js';

export interface OpenOptions {
  tokenizer?: string;
  backend?: string;
}

export interface Opened {
  model: Model;
  tokenizer: Tokenizer | null;
  source: string;
}

export function resolveBackend(name: string | undefined): Backend {
  const n = name ?? 'auto';
  if (n !== 'ref' && n !== 'cpu' && n !== 'auto') throw new OptionError('backend', undefined, `expected ref, cpu or auto, got '${n}'`);
  return getBackend(n);
}

/** Load a model (HF directory, our DeepSeek-V3-layout directory, or llama2.c .bin) onto a backend. */
export function openModel(path: string, opts: OpenOptions = {}, be?: Backend): Opened {
  const backend = be ?? resolveBackend(opts.backend);
  const loaded = loadModel(path, { tokenizer: opts.tokenizer });
  const model = Model.fromWeights(loaded.config, loaded.weights, backend, loaded.source);
  return { model, tokenizer: loaded.tokenizer, source: loaded.source };
}

/** The tokenizer, or a clear error saying how to give one. */
export function requireTokenizer(o: Opened): Tokenizer {
  if (!o.tokenizer) {
    throw new UserError(`${o.source}: no tokenizer (give {tokenizer} for a llama2.c checkpoint, or add tokenizer.json to the directory)`);
  }
  return o.tokenizer;
}

// Which tokenizer files travel with a model into an output directory (convert, distil and export all carry them).

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Tokenizer files to carry into an output directory (a llama2.c tokenizer is stored as tokenizer.bin): the explicit
 *  `tokenizer` (a file or a directory holding one), else those beside the model directory. */
export function tokenizerFiles(modelPath: string, tokenizer: string | undefined): { from: string; name: string }[] {
  if (tokenizer) {
    if (statSync(tokenizer).isDirectory()) return tokenizerFiles(tokenizer, undefined);
    return [{ from: tokenizer, name: tokenizer.endsWith('.bin') ? 'tokenizer.bin' : 'tokenizer.json' }];
  }
  if (!statSync(modelPath).isDirectory()) return [];
  return ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.bin']
    .filter((f) => existsSync(join(modelPath, f)))
    .map((f) => ({ from: join(modelPath, f), name: f }));
}

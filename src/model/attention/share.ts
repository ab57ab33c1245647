// State that layers share within one forward pass (xKV: a group of layers reads its first layer's latent). The
// attention interface is per layer; this is its one cross-layer channel: a layer that some later layer reads
// (AttentionKind.reads) publishes a value under its own index, and the readers take it. Nothing outlives the pass.
// What is published is the writer kind's own type; the reader checks it with a guard (a wrong pairing is an error
// naming both layers, never a silent cast).

import type { ModelConfig } from '../config.js';
import { attentionKind } from './index.js';

export class LayerShare {
  /** Layers that some later layer reads. */
  private readonly wantedSet = new Set<number>();
  private readonly values = new Map<number, object>();

  constructor(cfg: ModelConfig) {
    cfg.layers.forEach((a, i) => {
      for (const j of attentionKind(a).reads(a)) {
        if (!(Number.isInteger(j) && j >= 0 && j < i)) throw new Error(`layer ${i} reads layer ${j}: only an earlier layer can be read`);
        this.wantedSet.add(j);
      }
    });
  }

  /** Whether any later layer reads layer i (else it publishes nothing and keeps nothing alive). */
  wanted(i: number): boolean {
    return this.wantedSet.has(i);
  }

  /** Publish layer i's value for the layers that read it. */
  put(i: number, value: object): void {
    if (this.wanted(i)) this.values.set(i, value);
  }

  /** What layer i published, checked by the reader's guard. */
  get<T extends object>(reader: number, i: number, guard: (v: object) => v is T, expected: string): T {
    const v = this.values.get(i);
    if (!v) throw new Error(`layer ${reader} reads layer ${i}, which published nothing in this pass`);
    if (!guard(v)) throw new Error(`layer ${reader} reads layer ${i}: expected ${expected}`);
    return v;
  }

  /** What layer i published (returned from its tidy scope so that the values outlive the layer's scope). */
  published(i: number): object | undefined {
    return this.values.get(i);
  }
}

/** An interface an adapter saw: reported to config-center's app resources (start-up step 11). */
export interface SeenInterface {
  code: string;
  method?: string;
  path?: string;
}

/**
 * The interfaces the adapters saw: fastify routes as they are declared, express and node:http
 * routes at their first request. Listeners hear each new code (to re-report resources).
 */
export class RoutesSeen {
  static readonly max = 1000;
  private readonly byCode = new Map<string, SeenInterface>();
  private readonly listeners = new Set<(added: SeenInterface) => void>();

  /** Notes an interface; the first sighting of a code wins. */
  add(seen: SeenInterface): void {
    if (this.byCode.has(seen.code) || this.byCode.size >= RoutesSeen.max) return;
    this.byCode.set(seen.code, seen);
    for (const listener of this.listeners) listener(seen);
  }

  has(code: string): boolean {
    return this.byCode.has(code);
  }

  list(): SeenInterface[] {
    return [...this.byCode.values()];
  }

  /** Calls `listener` for every new code; returns a function that stops it. */
  onAdded(listener: (added: SeenInterface) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

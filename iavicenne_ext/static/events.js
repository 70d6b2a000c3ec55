/**
 * Events: one small emitter that every object of the client uses (`on(kind, callback)`
 * returns the function that removes the listener; `next(kind)` is the next event as a
 * promise). A listener that throws is reported and does not stop the others.
 */

import { IAvicenneError } from "./errors.js";

/** One small event emitter: `on(kind, callback)` returns the function that removes it. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<(event: any) => void>>} */
    this._listeners = new Map();
  }

  /**
   * @param {string} kind
   * @param {(event: any) => void} callback
   * @returns {() => void}
   */
  on(kind, callback) {
    let listeners = this._listeners.get(kind);
    if (!listeners) this._listeners.set(kind, (listeners = new Set()));
    const entry = (/** @type {any} */ event) => callback(event);
    listeners.add(entry);
    return () => {
      listeners?.delete(entry);
    };
  }

  /**
   * The next event of `kind` (that `where` accepts), as a promise; rejects after `timeout` ms.
   * @param {string} kind
   * @param {{ where?: (event: any) => boolean, timeout?: number }} [options]
   * @returns {Promise<any>}
   */
  next(kind, { where, timeout } = {}) {
    return new Promise((resolve, reject) => {
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      const off = this.on(kind, (event) => {
        if (where && !where(event)) return;
        off();
        if (timer !== undefined) clearTimeout(timer);
        resolve(event);
      });
      if (timeout !== undefined) {
        timer = setTimeout(() => {
          off();
          reject(new IAvicenneError(`no ${kind} event within ${timeout} ms`));
        }, timeout);
      }
    });
  }

  /**
   * Call every listener of `kind`; one that throws is reported and does not stop the others.
   * @param {string} kind
   * @param {any} event
   */
  emit(kind, event) {
    const listeners = this._listeners.get(kind);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(event);
      } catch (error) {
        report(error);
      }
    }
  }

  clear() {
    this._listeners.clear();
  }
}

/**
 * An error nobody waits for (a listener's, a frame handler's): to the page's error
 * reporting (`reportError`, which a page's `error` listeners see), else the console.
 * @param {unknown} error
 */
export function report(error) {
  const global = /** @type {any} */ (globalThis);
  if (typeof global.reportError === "function") global.reportError(error);
  else console.error(error);
}

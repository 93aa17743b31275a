/**
 * `promise`, or a rejection with `timeout()` when it has not settled within `ms`. A deadline that comes due
 * while the event loop was held (a starved CPU, a long collection) first lets the loop read the I/O that
 * arrived meanwhile: timers run before sockets are read, so an answer already in the socket's buffer would
 * otherwise lose to a timer that only looked late.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, timeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(
      () =>
        setImmediate(() => {
          if (settled) return;
          settled = true;
          reject(timeout());
        }),
      ms,
    );
    promise.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

import { Code, ConnectError } from "@connectrpc/connect";
import { createAsyncIterable, readAllBytes, type UniversalHandler, type UniversalServerRequest } from "@connectrpc/connect/protocol";
import { errorToJsonBytes } from "@connectrpc/connect/protocol-connect";

const parseBinaryPrefix = "parse binary: ";

/**
 * connect-es answers a binary (`application/proto`) body it cannot decode with `internal` (500),
 * as if the server were at fault, while an undecodable JSON body gets `invalid_argument`. Both are
 * the caller's bad input: this wraps a handler so that exactly that answer (connect-es's "parse
 * binary:" error) becomes `invalid_argument` (400). Other answers pass through untouched.
 */
export function undecodableAsInvalid(handler: UniversalHandler): UniversalHandler {
  const wrapped = async (req: UniversalServerRequest) => {
    const res = await handler(req);
    if (res.status !== 500 || !res.body) return res;
    const bytes = await readAllBytes(res.body, Number.MAX_SAFE_INTEGER);
    let error: { code?: unknown; message?: unknown } | undefined;
    try {
      error = JSON.parse(new TextDecoder().decode(bytes)) as typeof error;
    } catch {
      // A compressed or non-JSON error body: not the one this looks for.
    }
    if (error?.code !== "internal" || typeof error.message !== "string" || !error.message.startsWith(parseBinaryPrefix))
      return { ...res, body: createAsyncIterable([bytes]) };
    const reason = error.message.slice(parseBinaryPrefix.length);
    const body = errorToJsonBytes(
      new ConnectError(`request body is not a valid ${handler.method.input.typeName}: ${reason}`, Code.InvalidArgument),
      undefined,
    );
    res.header?.set("content-length", String(body.byteLength));
    return { ...res, status: 400, body: createAsyncIterable([body]) };
  };
  return Object.assign(wrapped, handler);
}

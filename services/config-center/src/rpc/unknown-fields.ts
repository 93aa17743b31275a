import type { DescMessage, Message } from "@bufbuild/protobuf";
import { badRequest } from "@opsplane/platform";

/**
 * The kit refuses a JSON request naming a field its message does not declare; a binary request
 * keeps such fields as `$unknown`. A registration is the instance's identity, so a field this
 * config-center does not know (a newer SDK's, a typo in a hand-built client) is refused there too,
 * naming the field numbers, rather than registering an instance without it.
 */
export function refuseUnknownBinaryFields(schema: DescMessage, message: Message): void {
  const unknown = message.$unknown;
  if (unknown?.length)
    throw badRequest(
      `${schema.name} has no field number ${[...new Set(unknown.map((f) => f.no))].join(", ")}: unknown fields are refused, not ignored (a typo?)`,
      { field: `number ${[...new Set(unknown.map((f) => f.no))].join(", ")}` },
    );
}

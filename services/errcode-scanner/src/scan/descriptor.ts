// Descriptors repeat across a whole artifact: each is parsed once per scan's thread.
const parsed = new Map<string, readonly string[]>();

/**
 * Parameter types of a method descriptor, e.g. `(ILjava/lang/String;[J)V` → ["I", "Ljava/lang/String;", "[J"].
 * The array is shared: callers must not change it.
 */
export function parameterTypes(desc: string): readonly string[] {
  let types = parsed.get(desc);
  if (!types) {
    types = parse(desc);
    parsed.set(desc, types);
  }
  return types;
}

function parse(desc: string): string[] {
  const out: string[] = [];
  let i = desc.indexOf("(") + 1;
  while (i < desc.length && desc[i] !== ")") {
    const start = i;
    while (desc[i] === "[") i++;
    if (desc[i] === "L") i = desc.indexOf(";", i) + 1;
    else i++;
    if (i <= start) break;
    out.push(desc.slice(start, i));
  }
  return out;
}

const returns = new Map<string, string>();

/** The return type of a method descriptor (`(I)Ljava/lang/String;` → `Ljava/lang/String;`). */
export function returnType(desc: string): string {
  let type = returns.get(desc);
  if (type === undefined) {
    type = desc.slice(desc.indexOf(")") + 1);
    returns.set(desc, type);
  }
  return type;
}

export const isWideType = (t: string): boolean => t === "J" || t === "D";

/** `Lcom/acme/Foo;` → `com.acme.Foo`; undefined for primitives and arrays. */
export function objectClass(t: string): string | undefined {
  return t.startsWith("L") ? t.slice(1, -1).replace(/\//g, ".") : undefined;
}

export const STRING = "Ljava/lang/String;";

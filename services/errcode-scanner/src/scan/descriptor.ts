/** Parameter types of a method descriptor, e.g. `(ILjava/lang/String;[J)V` → ["I", "Ljava/lang/String;", "[J"]. */
export function parameterTypes(desc: string): string[] {
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

export function returnType(desc: string): string {
  return desc.slice(desc.indexOf(")") + 1);
}

export const isWideType = (t: string): boolean => t === "J" || t === "D";

/** `Lcom/acme/Foo;` → `com.acme.Foo`; undefined for primitives and arrays. */
export function objectClass(t: string): string | undefined {
  return t.startsWith("L") ? t.slice(1, -1).replace(/\//g, ".") : undefined;
}

export const STRING = "Ljava/lang/String;";

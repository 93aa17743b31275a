/**
 * What a scan is asked with, checked alike whether it comes as a request (400) or as an
 * `artifact.published` event (a failed scan naming the reason): a pipeline's event is input too.
 */

/** A Java class's binary name, dotted: `com.acme.BizException`. */
export const className = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/;
const artifactFileName = /^[\w.+-]{1,200}\.(jar|war|ear|zip)$/i;

/** Why `bases` cannot be scanned for, or undefined. */
export function basesProblem(bases: readonly string[]): string | undefined {
  const bad = bases.find((b) => !className.test(b));
  return bad === undefined ? undefined : `bases: ${JSON.stringify(bad)} is not a fully-qualified class name`;
}

/** Why `name` cannot be an artifact's name, or undefined. */
export function artifactNameProblem(name: string): string | undefined {
  return artifactFileName.test(name) ? undefined : "artifact_name must be a file name ending in .jar, .war, .ear or .zip";
}

/**
 * For a route whose body fields are all optional (`{expectRevision?, comment?}`): a request sent
 * without a body (or with an empty one) means `{}`, as the README documents, instead of failing
 * the schema with "body must be object".
 */
export async function absentBodyIsEmpty(req: { body: unknown }): Promise<void> {
  req.body ??= {};
}

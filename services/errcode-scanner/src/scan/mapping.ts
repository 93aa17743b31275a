// Kept apart from the extractor: the CLI's main thread reads the defaults without loading it.
/**
 * How code and message are told apart at a base-class constructor. `slots` pins them per base
 * class and constructor descriptor (argument indexes); without a pin, the first String argument
 * shaped like a code (`codeShape`) is the code and another String the message, and objects
 * (enum constants, constant holders) give theirs through fields named in `codeFields`/`messageFields`.
 */
export interface CodeMapping {
  codeShape: RegExp;
  slots: Record<string, Record<string, { code?: number; message?: number }>>;
  codeFields: string[];
  messageFields: string[];
}

export const defaultMapping: CodeMapping = {
  // No whitespace, 2–64 characters, and either a digit or all upper case: "E1001", "ACC-0001", "08001", "TIMEOUT".
  codeShape: /^(?=\S*\d|[A-Z0-9_.:-]+$)[A-Za-z0-9][A-Za-z0-9_.:-]{1,63}$/,
  slots: {},
  codeFields: ["code", "errorCode", "errCode", "errorNo", "state", "sqlState", "status", "value"],
  messageFields: ["message", "msg", "errorMessage", "errMsg", "description", "desc", "text", "reason", "defaultMessage"],
};

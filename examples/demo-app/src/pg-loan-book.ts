// Loans in PostgreSQL, reached through the technical parameter `db.main`: config-center resolves
// its `{"$ref": "middleware/loan-db"}` to the resource's config and secrets ({host, port,
// database, user, password}), or local configuration gives `{connectionString}`. A changed
// `db.main` opens a new book (main.ts's rebuild hook) and closes this one once its queries end.
import pg from "pg";
import { BookUnavailable, type Loan, type LoanBook, type NewLoan, newLoanId, type RepayOutcome } from "./loan-book.js";

/** The fields of `db.main` this book uses; anything else in the value is left alone. */
export interface DatabaseSettings {
  connectionString?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  /** Connections this instance may hold (default 10). */
  poolMax?: number;
}

export function databaseSettings(value: unknown): DatabaseSettings {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new Error("db.main must be an object: {connectionString} or {host, port, database, user, password}");
  const v = value as Record<string, unknown>;
  const text = (k: string) => (typeof v[k] === "string" ? (v[k] as string) : undefined);
  const port = v.port === undefined ? undefined : Number(v.port);
  return {
    connectionString: text("connectionString"),
    host: text("host"),
    port: Number.isInteger(port) ? port : undefined,
    database: text("database"),
    user: text("user"),
    password: text("password"),
    poolMax: typeof v.poolMax === "number" ? v.poolMax : undefined,
  };
}

// One string is one transaction: the lock makes instances starting together create the schema one
// after another (concurrent CREATE SCHEMA IF NOT EXISTS can still collide on PostgreSQL's catalog).
const schema = `
SELECT pg_advisory_xact_lock(hashtext('loan_demo.schema'));
CREATE SCHEMA IF NOT EXISTS loan_demo;
CREATE TABLE IF NOT EXISTS loan_demo.loans (
  id text PRIMARY KEY,
  applicant text NOT NULL,
  bank_code text NOT NULL,
  bank_name text NOT NULL,
  amount_cents bigint NOT NULL,
  term_months int NOT NULL,
  annual_rate_pct numeric NOT NULL,
  monthly_payment_cents bigint NOT NULL,
  outstanding_cents bigint NOT NULL,
  status text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
)`;

interface Row {
  id: string;
  applicant: string;
  bank_code: string;
  bank_name: string;
  amount_cents: string;
  term_months: number;
  annual_rate_pct: string;
  monthly_payment_cents: string;
  outstanding_cents: string;
  status: Loan["status"];
  created_at: Date;
}

const loanOf = (r: Row): Loan => ({
  id: r.id,
  applicant: r.applicant,
  bankCode: r.bank_code,
  bankName: r.bank_name,
  amountCents: Number(r.amount_cents),
  termMonths: r.term_months,
  annualRatePct: Number(r.annual_rate_pct),
  monthlyPaymentCents: Number(r.monthly_payment_cents),
  outstandingCents: Number(r.outstanding_cents),
  status: r.status,
  createdAt: r.created_at.toISOString(),
});

export class PgLoanBook implements LoanBook {
  private constructor(
    readonly pool: pg.Pool,
    readonly description: string,
  ) {}

  /** Connects and creates the table if needed; throws (and holds nothing open) when the database cannot be used. */
  static async open(settings: DatabaseSettings, log: (line: string) => void): Promise<PgLoanBook> {
    const { poolMax, ...connection } = settings;
    const pool = new pg.Pool({
      ...connection,
      max: poolMax ?? 10,
      connectionTimeoutMillis: 2_000,
      query_timeout: 5_000,
      application_name: "loan-demo",
    });
    // An idle connection dropped by the server: the next query opens another.
    pool.on("error", (err) => log(`loan book: idle database connection lost: ${err.message}`));
    const where = connection.connectionString
      ? new URL(connection.connectionString).host + new URL(connection.connectionString).pathname
      : `${connection.host ?? "localhost"}:${connection.port ?? 5432}/${connection.database ?? ""}`;
    try {
      await pool.query(schema);
    } catch (err) {
      await pool.end();
      throw new Error(`loan book: cannot use PostgreSQL ${where}: ${(err as Error).message}`);
    }
    return new PgLoanBook(pool, `postgresql ${where}`);
  }

  private async query(text: string, values: unknown[]): Promise<Row[]> {
    try {
      return (await this.pool.query<Row>(text, values)).rows;
    } catch (err) {
      throw new BookUnavailable(`loan book unavailable: ${(err as Error).message}`);
    }
  }

  async add({ totalCents, ...l }: NewLoan): Promise<Loan> {
    const rows = await this.query(
      `INSERT INTO loan_demo.loans (id, applicant, bank_code, bank_name, amount_cents, term_months, annual_rate_pct,
         monthly_payment_cents, outstanding_cents, status)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active') RETURNING *`,
      [newLoanId(), l.applicant, l.bankCode, l.bankName, l.amountCents, l.termMonths, l.annualRatePct, l.monthlyPaymentCents, totalCents],
    );
    return loanOf(rows[0]!);
  }

  async get(id: string): Promise<Loan | undefined> {
    const rows = await this.query("SELECT * FROM loan_demo.loans WHERE id = $1", [id]);
    return rows[0] && loanOf(rows[0]);
  }

  /** One statement: two repayments of one loan on two instances never both take the last cents. */
  async repay(id: string, amountCents: number): Promise<RepayOutcome> {
    const rows = await this.query(
      `UPDATE loan_demo.loans
         SET outstanding_cents = outstanding_cents - $2,
             status = CASE WHEN outstanding_cents = $2 THEN 'repaid' ELSE status END
       WHERE id = $1 AND status = 'active' AND outstanding_cents >= $2 RETURNING *`,
      [id, amountCents],
    );
    if (rows[0]) return { outcome: "repaid", loan: loanOf(rows[0]) };
    const loan = await this.get(id);
    if (!loan) return { outcome: "not-found" };
    if (loan.status === "repaid") return { outcome: "closed" };
    return { outcome: "exceeds", outstandingCents: loan.outstandingCents };
  }

  async count(): Promise<number> {
    const rows = (await this.query("SELECT count(*)::int AS n FROM loan_demo.loans", [])) as unknown as Array<{ n: number }>;
    return rows[0]!.n;
  }

  /** Waits for the queries in flight, then closes the connections. */
  async close(): Promise<void> {
    await this.pool.end();
  }
}

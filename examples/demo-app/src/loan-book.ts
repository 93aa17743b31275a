// Where loans are kept: in memory (no database configured: the bench, a quick start) or in
// PostgreSQL (pg-loan-book.ts, the technical parameter `db.main`). Amounts are integer cents.
import { randomBytes } from "node:crypto";

export interface Loan {
  id: string;
  applicant: string;
  bankCode: string;
  bankName: string;
  amountCents: number;
  termMonths: number;
  annualRatePct: number;
  monthlyPaymentCents: number;
  /** What is left to repay; the loan is `repaid` at zero. */
  outstandingCents: number;
  status: "active" | "repaid";
  createdAt: string;
}

export type NewLoan = Omit<Loan, "id" | "status" | "createdAt" | "outstandingCents"> & { totalCents: number };

export type RepayOutcome =
  | { outcome: "repaid"; loan: Loan }
  | { outcome: "not-found" }
  | { outcome: "closed" }
  | { outcome: "exceeds"; outstandingCents: number };

/** The store could not answer (database down, timed out): the request gets a 503, never a 500 or a hang. */
export class BookUnavailable extends Error {}

export interface LoanBook {
  /** What it is, for logs and the dial check: "memory" or "postgresql host/database". */
  readonly description: string;
  add(loan: NewLoan): Promise<Loan>;
  get(id: string): Promise<Loan | undefined>;
  repay(id: string, amountCents: number): Promise<RepayOutcome>;
  count(): Promise<number>;
  close(): Promise<void>;
}

/** `LN20250314` + 10 random hex digits: unique across instances sharing a database. */
export function newLoanId(now = new Date()): string {
  return `LN${now.toISOString().slice(0, 10).replaceAll("-", "")}${randomBytes(5).toString("hex")}`;
}

export class MemoryLoanBook implements LoanBook {
  readonly description = "memory";
  private readonly loans = new Map<string, Loan>();

  async add({ totalCents, ...terms }: NewLoan): Promise<Loan> {
    const loan: Loan = { ...terms, id: newLoanId(), status: "active", outstandingCents: totalCents, createdAt: new Date().toISOString() };
    this.loans.set(loan.id, loan);
    return { ...loan };
  }

  async get(id: string): Promise<Loan | undefined> {
    const loan = this.loans.get(id);
    return loan && { ...loan };
  }

  async repay(id: string, amountCents: number): Promise<RepayOutcome> {
    const loan = this.loans.get(id);
    if (!loan) return { outcome: "not-found" };
    if (loan.status === "repaid") return { outcome: "closed" };
    if (amountCents > loan.outstandingCents) return { outcome: "exceeds", outstandingCents: loan.outstandingCents };
    loan.outstandingCents -= amountCents;
    if (loan.outstandingCents === 0) loan.status = "repaid";
    return { outcome: "repaid", loan: { ...loan } };
  }

  async count(): Promise<number> {
    return this.loans.size;
  }

  async close(): Promise<void> {}
}

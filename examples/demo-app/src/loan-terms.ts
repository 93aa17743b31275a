// The loan terms an application is priced and checked against, from two business parameters
// config-center holds (seed module 2022): the app's rate table and the shared bank-code dictionary.
// The app ships the same values as its local defaults, so it also serves on local configuration
// (degraded start, or run without the SDK).

/** Business parameter `loan.rate-table` (this app's): amount limits and the annual rate by term. */
export interface RateTable {
  currency: string;
  minAmount: number;
  maxAmount: number;
  /** Ordered or not: a term takes the first tier (by maxTermMonths) that covers it. */
  tiers: Array<{ maxTermMonths: number; annualRatePct: number }>;
}

/** Business parameter `bank-codes` (shared by every app, category `bank-codes`): 12-digit CNAPS codes. */
export type BankCodes = Array<{ code: string; name: string }>;

export const rateTableKey = "loan.rate-table";
export const bankCodesKey = "bank-codes";

/** Its JSON Schema, kept with the item in config-center: a malformed table is refused there, not here. */
export const rateTableSchema = {
  type: "object",
  required: ["currency", "minAmount", "maxAmount", "tiers"],
  additionalProperties: false,
  properties: {
    currency: { type: "string", pattern: "^[A-Z]{3}$" },
    minAmount: { type: "number", exclusiveMinimum: 0 },
    maxAmount: { type: "number", exclusiveMinimum: 0 },
    tiers: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["maxTermMonths", "annualRatePct"],
        additionalProperties: false,
        properties: {
          maxTermMonths: { type: "integer", minimum: 1, maximum: 480 },
          annualRatePct: { type: "number", minimum: 0, maximum: 100 },
        },
      },
    },
  },
};

export const defaultRateTable: RateTable = {
  currency: "CNY",
  minAmount: 1_000,
  maxAmount: 500_000,
  tiers: [
    { maxTermMonths: 12, annualRatePct: 4.35 },
    { maxTermMonths: 36, annualRatePct: 4.75 },
    { maxTermMonths: 60, annualRatePct: 4.9 },
  ],
};

export const defaultBankCodes: BankCodes = [
  { code: "102100099996", name: "Industrial and Commercial Bank of China" },
  { code: "103100000026", name: "Agricultural Bank of China" },
  { code: "104100000004", name: "Bank of China" },
  { code: "105100000017", name: "China Construction Bank" },
];

/** Why an application cannot be priced: answered as a 400 naming it. */
export class TermsRefusal extends Error {}

export interface Pricing {
  annualRatePct: number;
  /** Equal monthly instalment, in cents. */
  monthlyPaymentCents: number;
  /** What the borrower repays in all, in cents. */
  totalCents: number;
}

/** One version of the terms: the tiers sorted and the dictionary indexed once, not per request. */
export class LoanTerms {
  private readonly tiers: RateTable["tiers"];
  private readonly banks: Map<string, string>;

  constructor(
    readonly rateTable: RateTable,
    bankCodes: BankCodes,
  ) {
    this.tiers = [...rateTable.tiers].sort((a, b) => a.maxTermMonths - b.maxTermMonths);
    this.banks = new Map(bankCodes.map((b) => [b.code, b.name]));
  }

  /** The bank's name, or a refusal naming the code. */
  bankName(code: string): string {
    const name = this.banks.get(code);
    if (name === undefined) throw new TermsRefusal(`bank code ${code} is not in the bank-code dictionary`);
    return name;
  }

  /** Prices `amountCents` over `termMonths` with the tier covering the term (annuity). */
  price(amountCents: number, termMonths: number): Pricing {
    const { minAmount, maxAmount, currency } = this.rateTable;
    if (amountCents < minAmount * 100 || amountCents > maxAmount * 100)
      throw new TermsRefusal(`amount must be between ${minAmount} and ${maxAmount} ${currency}`);
    const tier = this.tiers.find((t) => termMonths <= t.maxTermMonths);
    if (!tier) throw new TermsRefusal(`termMonths ${termMonths} is beyond the rate table (at most ${this.tiers.at(-1)!.maxTermMonths})`);
    const monthlyRate = tier.annualRatePct / 1200;
    const monthly = monthlyRate === 0 ? amountCents / termMonths : (amountCents * monthlyRate) / (1 - (1 + monthlyRate) ** -termMonths);
    const monthlyPaymentCents = Math.round(monthly);
    return { annualRatePct: tier.annualRatePct, monthlyPaymentCents, totalCents: monthlyPaymentCents * termMonths };
  }
}

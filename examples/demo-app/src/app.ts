// The loan service's HTTP API: apply, query, repay. The same handlers run with the SDK (main.ts
// registers its fastify plugin first, so every route passes the governance gate under its
// code) and without it (the bench's baseline). The route table is also what the app declares to
// config-center (step 11), so the reported interfaces are the served ones.
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginCallback,
  type FastifyReply,
  type FastifyRequest,
} from "fastify";
import { BookUnavailable, type Loan, type LoanBook } from "./loan-book.js";
import { type LoanTerms, TermsRefusal } from "./loan-terms.js";

export interface AppParts {
  /** The current loan book (a technical change may replace it). */
  book(): LoanBook;
  /** The current loan terms (a business change replaces them). */
  terms(): LoanTerms;
  /** The SDK's fastify plugin, registered before the routes; absent without the SDK. */
  edge?: FastifyPluginCallback;
  loggerInstance?: FastifyBaseLogger;
}

const units = (cents: number) => cents / 100;

/** A loan as the API shows it: amounts in currency units. */
function view(l: Loan) {
  return {
    id: l.id,
    applicant: l.applicant,
    bankCode: l.bankCode,
    bankName: l.bankName,
    amount: units(l.amountCents),
    termMonths: l.termMonths,
    annualRatePct: l.annualRatePct,
    monthlyPayment: units(l.monthlyPaymentCents),
    outstanding: units(l.outstandingCents),
    status: l.status,
    createdAt: l.createdAt,
  };
}

/** `amount` in cents, or a refusal when it has more than two decimals. */
function cents(amount: number): number {
  const c = Math.round(amount * 100);
  if (Math.abs(c - amount * 100) > 1e-6) throw new TermsRefusal("amount must have at most 2 decimals");
  return c;
}

const money = { type: "number", exclusiveMinimum: 0, maximum: 1e12 };
const loanId = { type: "object", required: ["id"], properties: { id: { type: "string", minLength: 1, maxLength: 64 } } };

type Handler = (parts: AppParts, req: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** One interface: served by fastify under `code`, and reported to config-center with its schema. */
export interface LoanInterface {
  code: string;
  method: "GET" | "POST";
  path: string;
  /** The fastify URL (`:id` where the OpenAPI path has `{id}`). */
  url: string;
  description: string;
  handler: string;
  schema: { body?: object; params?: object };
  run: Handler;
}

export const loanInterfaces: LoanInterface[] = [
  {
    code: "loan.apply",
    method: "POST",
    path: "/loans",
    url: "/loans",
    description: "apply for a loan: the bank code must be in the bank-code dictionary, the rate comes from the rate table",
    handler: "LoanService.apply(applicant, amount, termMonths, bankCode)",
    schema: {
      body: {
        type: "object",
        required: ["applicant", "amount", "termMonths", "bankCode"],
        additionalProperties: false,
        properties: {
          applicant: { type: "string", minLength: 1, maxLength: 128 },
          amount: money,
          termMonths: { type: "integer", minimum: 1, maximum: 480 },
          bankCode: { type: "string", pattern: "^[0-9]{12}$" },
        },
      },
    },
    async run(parts, req, reply) {
      const body = req.body as { applicant: string; amount: number; termMonths: number; bankCode: string };
      const terms = parts.terms();
      const bankName = terms.bankName(body.bankCode);
      const amountCents = cents(body.amount);
      const pricing = terms.price(amountCents, body.termMonths);
      const loan = await parts.book().add({
        applicant: body.applicant,
        bankCode: body.bankCode,
        bankName,
        amountCents,
        termMonths: body.termMonths,
        annualRatePct: pricing.annualRatePct,
        monthlyPaymentCents: pricing.monthlyPaymentCents,
        totalCents: pricing.totalCents,
      });
      return reply.code(201).send(view(loan));
    },
  },
  {
    code: "loan.query",
    method: "GET",
    path: "/loans/{id}",
    url: "/loans/:id",
    description: "a loan with what is left to repay",
    handler: "LoanService.query(id)",
    schema: { params: loanId },
    async run(parts, req, reply) {
      const { id } = req.params as { id: string };
      const loan = await parts.book().get(id);
      if (!loan) return reply.code(404).send({ error: "not_found", message: `no loan ${id}` });
      return view(loan);
    },
  },
  {
    code: "loan.repay",
    method: "POST",
    path: "/loans/{id}/repayments",
    url: "/loans/:id/repayments",
    description: "repay part or all of what is outstanding",
    handler: "LoanService.repay(id, amount)",
    schema: {
      params: loanId,
      body: { type: "object", required: ["amount"], additionalProperties: false, properties: { amount: money } },
    },
    async run(parts, req, reply) {
      const { id } = req.params as { id: string };
      const { amount } = req.body as { amount: number };
      const r = await parts.book().repay(id, cents(amount));
      switch (r.outcome) {
        case "repaid":
          return reply.code(201).send(view(r.loan));
        case "not-found":
          return reply.code(404).send({ error: "not_found", message: `no loan ${id}` });
        case "closed":
          return reply.code(409).send({ error: "conflict", message: `loan ${id} is already repaid` });
        case "exceeds":
          return reply
            .code(400)
            .send({ error: "invalid_request", message: `amount is more than the ${units(r.outstandingCents)} outstanding` });
      }
    },
  },
];

export async function buildApp(parts: AppParts): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: parts.loggerInstance,
    // Bad input is refused, not reshaped: no coercion of "100" into 100, no silent dropping of unknown fields.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false } },
  });
  app.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, req, reply) => {
    if (err.validation || err instanceof TermsRefusal) return reply.code(400).send({ error: "invalid_request", message: err.message });
    if (err instanceof BookUnavailable)
      return reply.code(503).header("retry-after", "5").send({ error: "unavailable", message: err.message });
    if (err.statusCode && err.statusCode < 500) return reply.code(err.statusCode).send({ error: "bad_request", message: err.message });
    req.log.error({ err }, "request failed");
    return reply.code(500).send({ error: "internal", message: "see the service log for this request" });
  });
  if (parts.edge) await app.register(parts.edge);
  for (const i of loanInterfaces) {
    app.route({
      method: i.method,
      url: i.url,
      schema: i.schema,
      config: { opsplane: { code: i.code } },
      handler: (req, reply) => i.run(parts, req, reply),
    });
  }
  // The supervisor's probe: not an interface of the service, so neither governed nor reported.
  app.get("/healthz", { config: { opsplane: false } }, async () => ({ status: "ok" }));
  return app;
}

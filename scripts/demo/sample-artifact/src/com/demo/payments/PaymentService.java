package com.demo.payments;

public class PaymentService {
    public void pay(String account, long amount, long balance) {
        if (account.isEmpty()) {
            throw new AccountException("ACC2001", "Account not found");
        }
        if (amount > balance) {
            throw new PaymentException(PaymentError.INSUFFICIENT_BALANCE);
        }
        if (amount > 50_000) {
            throw new PaymentException(PaymentError.DAILY_LIMIT_EXCEEDED);
        }
    }

    public void bindCard(String account, String cardNo) {
        if (cardNo.length() < 16) {
            throw new PaymentException(PaymentError.CARD_EXPIRED);
        }
        if (account.startsWith("X")) {
            // Two mistakes the scanner reports: a code off the house pattern, and a message
            // that leaks the database's error to the customer.
            throw new AccountException("acc-2002", "SQLSTATE 23505: duplicate key value violates unique constraint");
        }
    }
}

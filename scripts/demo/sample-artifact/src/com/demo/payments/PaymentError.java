package com.demo.payments;

/** Payment error codes, as most services keep them: an enum of code and message. */
public enum PaymentError {
    INSUFFICIENT_BALANCE("PAY1001", "Insufficient balance"),
    CARD_EXPIRED("PAY1002", "Card expired"),
    DAILY_LIMIT_EXCEEDED("PAY1003", "Daily limit exceeded");

    private final String code;
    private final String message;

    PaymentError(String code, String message) {
        this.code = code;
        this.message = message;
    }

    public String getCode() {
        return code;
    }

    public String getMessage() {
        return message;
    }
}

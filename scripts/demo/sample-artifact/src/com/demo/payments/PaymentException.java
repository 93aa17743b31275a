package com.demo.payments;

public class PaymentException extends BizException {
    public PaymentException(PaymentError error) {
        super(error.getCode(), error.getMessage());
    }
}

package com.demo.payments;

public class AccountException extends BizException {
    public AccountException(String code, String message) {
        super(code, message);
    }
}

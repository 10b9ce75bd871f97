"""Operations: the run ledger, step progress and the run summary."""

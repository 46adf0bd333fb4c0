// Errors of the pull API, in the API's one error shape:
//   {"summary": "<one clear sentence>", "validation_errors": {"<field>": ["reason"]}}
export type FieldErrors = Record<string, string[]>;

export class PullError extends Error {
  constructor(
    readonly statusCode: number,
    summary: string,
    readonly validationErrors?: FieldErrors,
  ) {
    super(summary);
    this.name = 'PullError';
  }

  toBody(): { summary: string; validation_errors?: FieldErrors } {
    return this.validationErrors ? { summary: this.message, validation_errors: this.validationErrors } : { summary: this.message };
  }
}

/** 422: the request parsed, but these values are not acceptable. */
export function invalidValues(errors: FieldErrors): PullError {
  const [field, reasons] = Object.entries(errors)[0] ?? ['request', ['is invalid']];
  const more = Object.keys(errors).length > 1 ? ` (and ${Object.keys(errors).length - 1} more)` : '';
  return new PullError(422, `Invalid request: ${field} ${reasons[0]}${more}.`, errors);
}

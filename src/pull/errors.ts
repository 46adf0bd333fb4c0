// Errors of the pull API: the API's one error shape and error class
// (src/http/errors.ts), with the pull routes' wording of value errors.
import { ApiError, type FieldErrors } from '../http/errors.js';

export { ApiError as PullError, type FieldErrors };

/** 422: the request parsed, but these values are not acceptable ("Invalid request: batch_size must be …"). */
export function invalidValues(errors: FieldErrors): ApiError {
  const [field, reasons] = Object.entries(errors)[0] ?? ['request', ['is invalid']];
  const more = Object.keys(errors).length > 1 ? ` (and ${Object.keys(errors).length - 1} more)` : '';
  return new ApiError(422, `Invalid request: ${field} ${reasons[0]}${more}.`, errors);
}

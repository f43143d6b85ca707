// The one generic error for any decryption failure: it never says why.

export class DecryptionError extends Error {
  constructor() {
    super('message could not be decrypted');
    this.name = 'DecryptionError';
  }
}

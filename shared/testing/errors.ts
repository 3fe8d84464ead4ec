/** Looking at what a call threw. */

/** What `promise` rejected with; throws (failing the test) if it resolved instead. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (thrown: unknown) => thrown,
  );
}

/**
 * Traces, through OpenTelemetry's API: one span for each attempt of a run of
 * a workflow, `run <workflow name>`, and inside it one for each step whose
 * code runs, `step <step name>` — from its start to its durable record. A step
 * that comes back from the log has no span of its own (nothing ran): it is an
 * event, `step replayed`, on its run's span. Attributes say which workflow,
 * which claim (fencing token), which attempt, which step position.
 *
 * Inert unless the application registers an SDK (`@opentelemetry/sdk-node`,
 * or a TracerProvider of its own): until then the API's tracer records
 * nothing, and a span costs a few object allocations. The engine depends on
 * the API package alone — the one OpenTelemetry asks libraries to depend on —
 * never on an SDK or an exporter: those are the application's choice, like
 * its logger (log.ts).
 *
 * Span names carry workflow and step *names*, never ids: a tracing backend
 * groups by name, and an id per span would make every span a group of one.
 */
import { context, SpanStatusCode, trace, type Span } from '@opentelemetry/api';

const tracer = trace.getTracer('@durable-course/engine', '0.8.0');

/** Attribute names: the workflow, the claim, the attempt, the step. */
export const ATTRIBUTES = {
  workflowId: 'workflow.id',
  workflowName: 'workflow.name',
  fencingToken: 'workflow.fencing_token',
  attempt: 'workflow.attempt',
  stepSeq: 'step.seq',
  stepName: 'step.name',
  stepKind: 'step.kind',
  stepAttempt: 'step.attempt',
} as const;

/** The span of one attempt of one run: started here, ended by `endSpan`. */
export function startRunSpan(workflow: { id: string; name: string; fencingToken: number }, attempt: number): Span {
  return tracer.startSpan(`run ${workflow.name}`, {
    attributes: {
      [ATTRIBUTES.workflowId]: workflow.id,
      [ATTRIBUTES.workflowName]: workflow.name,
      [ATTRIBUTES.fencingToken]: workflow.fencingToken,
      [ATTRIBUTES.attempt]: attempt,
    },
  });
}

/** Run `fn` with `span` as the active span: the steps it runs become its children. */
export function withSpan<T>(span: Span, fn: () => Promise<T>): Promise<T> {
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** End `span`: OK, or with `error` recorded as its exception and its status. */
export function endSpan(span: Span, error?: Error): void {
  if (error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  }
  span.end();
}

/** Run one step's code and record, inside a `step <name>` span (a child of the active run span). */
export function inStepSpan<T>(
  step: { workflowId: string; fencingToken: number; seq: number; name: string; kind: 'step' | 'transaction'; attempt: number },
  fn: () => Promise<T>,
): Promise<T> {
  const attributes = {
    [ATTRIBUTES.workflowId]: step.workflowId,
    [ATTRIBUTES.fencingToken]: step.fencingToken,
    [ATTRIBUTES.stepSeq]: step.seq,
    [ATTRIBUTES.stepName]: step.name,
    [ATTRIBUTES.stepKind]: step.kind,
    [ATTRIBUTES.stepAttempt]: step.attempt,
  };
  return tracer.startActiveSpan(`step ${step.name}`, { attributes }, async (span) => {
    try {
      const result = await fn();
      endSpan(span);
      return result;
    } catch (thrown) {
      endSpan(span, thrown instanceof Error ? thrown : new Error(String(thrown)));
      throw thrown;
    }
  });
}

import { getContainerRuntimeClient } from "testcontainers";

let answer: Promise<boolean> | undefined;

/** Whether a Docker engine answers, so testcontainers can be used. Asked once per process. */
export function dockerAnswers(): Promise<boolean> {
  answer ??= getContainerRuntimeClient().then(
    () => true,
    () => false,
  );
  return answer;
}

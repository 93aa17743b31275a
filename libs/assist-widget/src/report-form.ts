import { applyCss } from "./css.js";

export interface ReportContext {
  relay: string;
  /** The open assist session, so the report links to it. */
  session(): { id: string; token: string } | undefined;
  /** The page as rrweb sees it, masked as the live stream is (rrweb events: a Meta and a full snapshot); undefined when it cannot be masked yet. */
  snapshot(): unknown[] | undefined;
}

const field = (label: string, html: string) => `<label data-css="display:block;margin:4px 0">${label}<br>${html}</label>`;

/** The "Report a problem" dialog: files a report (with an optional masked page snapshot and images) to the relay. */
export function openReportForm(host: HTMLElement, ctx: ReportContext): void {
  const form = document.createElement("form");
  form.id = "opsplane-assist-report";
  form.style.cssText =
    "position:fixed;right:12px;bottom:70px;width:320px;background:#fff;color:#111;border:1px solid #999;border-radius:6px;padding:10px;font:13px sans-serif;z-index:2147483647";
  form.innerHTML = `<b>Report a problem</b>
    ${field("Your name", '<input name="reporter" required maxlength="200">')}
    ${field("Contact", '<input name="contact" maxlength="200">')}
    ${field("Customer reference", '<input name="customerRef" maxlength="200">')}
    ${field("Category", '<select name="category"><option value="data">Data</option><option value="program">Program</option><option value="consultation">Consultation</option><option value="other">Other</option></select>')}
    ${field("What happened", '<textarea name="description" required rows="4" maxlength="20000"></textarea>')}
    ${field("", '<input type="checkbox" name="snapshot" checked> attach a snapshot of this page')}
    ${field("Images", '<input type="file" name="images" accept="image/*" multiple>')}
    <button type="submit">Send</button> <button type="button" data-cancel>Cancel</button> <span data-result></span>`;
  applyCss(form);
  host.append(form);
  form.querySelector("[data-cancel]")!.addEventListener("click", () => form.remove());
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const result = form.querySelector<HTMLElement>("[data-result]")!;
    const attachments: Array<{ kind: "snapshot" | "image"; name: string; contentType: string; dataBase64: string }> = [];
    const snap = data.get("snapshot") ? ctx.snapshot() : undefined;
    if (snap) {
      attachments.push({
        kind: "snapshot",
        name: "page.json",
        contentType: "application/json",
        dataBase64: toBase64(new TextEncoder().encode(JSON.stringify(snap))),
      });
    }
    for (const file of data.getAll("images")) {
      if (file instanceof File && file.size > 0)
        attachments.push({
          kind: "image",
          name: file.name,
          contentType: file.type || "image/png",
          dataBase64: toBase64(new Uint8Array(await file.arrayBuffer())),
        });
    }
    const session = ctx.session();
    const response = await fetch(`${ctx.relay}/assist/reports`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        reporter: data.get("reporter"),
        contact: data.get("contact"),
        customerRef: data.get("customerRef"),
        category: data.get("category"),
        description: data.get("description"),
        attachments,
        ...(session ? { session } : {}),
      }),
    });
    const body = (await response.json()) as { id?: string; reporterToken?: string; message?: string };
    if (!response.ok) {
      result.textContent = `Not sent: ${body.message}`;
      return;
    }
    // The reporter follows the handling with this id and token.
    localStorage.setItem(`opsplane-assist-report:${body.id}`, body.reporterToken ?? "");
    result.textContent = `Sent. Report ${body.id}`;
    result.dataset.reportId = body.id;
  });
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

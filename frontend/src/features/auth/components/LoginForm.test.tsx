import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";

import { ApiError } from "../../../lib/api";
import { LoginForm } from "./LoginForm";

async function fillAndSubmit(user: ReturnType<typeof userEvent.setup>, name: string, password: string) {
  if (name) await user.type(screen.getByLabelText("User name"), name);
  if (password) await user.type(screen.getByLabelText("Password"), password);
  await user.click(screen.getByRole("button", { name: "Sign in" }));
}

describe("LoginForm", () => {
  it("asks for both fields before calling the server", async () => {
    const onLogin = vi.fn();
    const user = userEvent.setup();
    render(<LoginForm onLogin={onLogin} />);

    await fillAndSubmit(user, "alice", "");

    expect(screen.getByRole("alert")).toHaveTextContent("Enter your user name and password.");
    expect(onLogin).not.toHaveBeenCalled();
  });

  it("shows the server's reason for a wrong password and clears the password", async () => {
    const onLogin = vi.fn().mockRejectedValue(new ApiError(401, "wrong user name or password"));
    const user = userEvent.setup();
    render(<LoginForm onLogin={onLogin} />);

    await fillAndSubmit(user, "alice", "not-her-password");

    expect(onLogin).toHaveBeenCalledWith("alice", "not-her-password");
    expect(await screen.findByRole("alert")).toHaveTextContent("wrong user name or password");
    expect(screen.getByLabelText("Password")).toHaveValue("");
    expect(screen.getByLabelText("User name")).toHaveAttribute("aria-invalid", "true");
  });

  it("tells how long to wait after too many attempts", async () => {
    const onLogin = vi.fn().mockRejectedValue(new ApiError(429, "too many failed logins; try again in 37 s", 37));
    const user = userEvent.setup();
    render(<LoginForm onLogin={onLogin} />);

    await fillAndSubmit(user, "alice", "whatever-pw");

    expect(await screen.findByRole("alert")).toHaveTextContent("Too many login attempts. Try again in 37 s.");
  });

  it("reports an unreachable service", async () => {
    const onLogin = vi.fn().mockRejectedValue(new ApiError(0, "Cannot reach the review service."));
    const user = userEvent.setup();
    render(<LoginForm onLogin={onLogin} />);

    await fillAndSubmit(user, "alice", "whatever-pw");

    expect(await screen.findByRole("alert")).toHaveTextContent("Cannot reach the review service.");
  });

  it("shows why the form is shown", () => {
    render(<LoginForm onLogin={vi.fn()} notice="Your session has ended. Please log in again." />);
    expect(screen.getByRole("status")).toHaveTextContent("Your session has ended");
  });
});

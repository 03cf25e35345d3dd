import { act, render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";

import { App } from "./App";
import * as authApi from "./features/auth/api/auth";
import { ApiError, api } from "./lib/api";

vi.mock("./features/auth/api/auth", () => ({
  currentSession: vi.fn(),
  login: vi.fn(),
  logout: vi.fn(),
}));
vi.mock("./features/queue/components/ReviewScreen", () => ({ ReviewScreen: () => <p>review screen</p> }));
vi.mock("./features/history/components/HistoryView", () => ({ HistoryView: () => <p>history screen</p> }));
vi.mock("./features/dashboard/components/Dashboard", () => ({ Dashboard: () => <p>dashboard screen</p> }));

const auth = vi.mocked(authApi);
const session = { username: "alice", csrf_token: "tok" };

beforeEach(() => {
  window.history.replaceState(null, "", "/");
  auth.currentSession.mockResolvedValue(null);
  auth.login.mockResolvedValue(session);
  auth.logout.mockResolvedValue(undefined);
});

describe("App", () => {
  it("asks for a login, then shows the review screen", async () => {
    const user = userEvent.setup();
    render(<App />);

    await user.type(await screen.findByLabelText("User name"), "alice");
    await user.type(screen.getByLabelText("Password"), "correct horse");
    await user.keyboard("{Enter}");

    expect(await screen.findByText("review screen")).toBeInTheDocument();
    expect(auth.login).toHaveBeenCalledWith("alice", "correct horse");
    expect(screen.getByText("alice")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Review" })).toHaveAttribute("aria-current", "page");
  });

  it("restores an existing session and navigates between screens", async () => {
    auth.currentSession.mockResolvedValue(session);
    const user = userEvent.setup();
    render(<App />);

    await screen.findByText("review screen");
    await user.click(screen.getByRole("link", { name: "History" }));
    expect(screen.getByText("history screen")).toBeInTheDocument();
    expect(window.location.pathname).toBe("/history");
    await user.click(screen.getByRole("link", { name: "Dashboard" }));
    expect(screen.getByText("dashboard screen")).toBeInTheDocument();

    act(() => window.history.back());
    expect(await screen.findByText("history screen")).toBeInTheDocument();
  });

  it("goes back to the login form when the server ends the session", async () => {
    auth.currentSession.mockResolvedValue(session);
    vi.stubGlobal("fetch", vi.fn().mockResolvedValue(new Response('{"detail":"not logged in"}', { status: 401 })));
    render(<App />);
    await screen.findByText("review screen");

    await act(() => api.get("/api/queue").catch(() => undefined));

    expect(await screen.findByRole("status")).toHaveTextContent("Your session has ended. Please log in again.");
    expect(screen.getByLabelText("User name")).toBeInTheDocument();
    vi.unstubAllGlobals();
  });

  it("logs out", async () => {
    auth.currentSession.mockResolvedValue(session);
    const user = userEvent.setup();
    render(<App />);

    await user.click(await screen.findByRole("button", { name: "Log out" }));

    expect(auth.logout).toHaveBeenCalled();
    expect(await screen.findByRole("status")).toHaveTextContent("You are logged out.");
  });

  it("stays logged in and says so when the logout fails, and logs out on a retry", async () => {
    auth.currentSession.mockResolvedValue(session);
    auth.logout.mockRejectedValueOnce(new ApiError(503, "storage unavailable"));
    const user = userEvent.setup();
    render(<App />);

    await user.click(await screen.findByRole("button", { name: "Log out" }));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Could not log out: storage unavailable. You are still logged in.");
    expect(screen.getByText("review screen")).toBeInTheDocument();
    expect(screen.getByText("alice")).toBeInTheDocument();
    expect(screen.queryByLabelText("User name")).not.toBeInTheDocument();
    expect(screen.queryByText("You are logged out.")).not.toBeInTheDocument();

    await user.click(within(alert).getByRole("button", { name: "Try again" }));

    expect(auth.logout).toHaveBeenCalledTimes(2);
    expect(await screen.findByRole("status")).toHaveTextContent("You are logged out.");
    expect(screen.getByLabelText("User name")).toBeInTheDocument();
  });

  it("stays logged in when the review service cannot be reached on logout", async () => {
    auth.currentSession.mockResolvedValue(session);
    auth.logout.mockRejectedValueOnce(new ApiError(0, "Cannot reach the review service. Check the network and try again."));
    const user = userEvent.setup();
    render(<App />);

    await user.click(await screen.findByRole("button", { name: "Log out" }));

    expect(await screen.findByRole("alert")).toHaveTextContent("Could not log out: Cannot reach the review service.");
    expect(screen.getByText("review screen")).toBeInTheDocument();
  });

  it("logs out when the server says the session was already gone (401)", async () => {
    auth.currentSession.mockResolvedValue(session);
    auth.logout.mockRejectedValueOnce(new ApiError(401, "not logged in"));
    const user = userEvent.setup();
    render(<App />);

    await user.click(await screen.findByRole("button", { name: "Log out" }));

    expect(await screen.findByRole("status")).toHaveTextContent("You are logged out.");
    expect(screen.getByLabelText("User name")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });
});

// The app's one store (zustand): the state of model.ts; components subscribe to slices of it.
import { create } from 'zustand';
import { type AppState, initialState } from './model';

export const useStore = create<AppState>(() => initialState);

/** Applies a pure change (model.ts) to the store. */
export const update = (f: (s: AppState) => AppState): void => useStore.setState(f(useStore.getState()), true);

export const getState = (): AppState => useStore.getState();

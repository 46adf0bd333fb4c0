// Hash routes (#/consumers/orders): the gateway serves one page, so no server
// route is needed per view, and a reload keeps the view.
import { useEffect, useState } from 'preact/hooks';

export function currentPath(): string {
  const hash = location.hash.replace(/^#/, '');
  return hash.startsWith('/') ? hash : '/';
}

export function useRoute(): string[] {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const update = () => setPath(currentPath());
    addEventListener('hashchange', update);
    return () => removeEventListener('hashchange', update);
  }, []);
  return path.split('/').filter(Boolean).map(decodeURIComponent);
}

export function navigate(path: string) {
  location.hash = `#${path}`;
}

export const href = (...parts: string[]) => `#/${parts.map(encodeURIComponent).join('/')}`;

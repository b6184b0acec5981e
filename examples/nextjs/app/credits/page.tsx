// /credits?user=alice: the credits page.  The user comes from the query
// string because authentication is out of scope; a real app takes it from
// its session.  The page itself is a server component that renders the
// client components below.
import { CreditsPage } from '@/components/CreditsPage';

export const dynamic = 'force-dynamic';

export default async function Page({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
	const { user } = await searchParams;
	const userId = typeof user === 'string' && user.length > 0 ? user : 'demo';
	return <CreditsPage user={userId} />;
}

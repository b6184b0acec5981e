import { redirect } from 'next/navigation';

// The example has one page.
export default function Home() {
	redirect('/credits');
}

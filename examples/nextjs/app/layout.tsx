// The root layout.  No web fonts (the build and the page work offline): the
// stylesheet uses the system font stack.
import type { ReactNode } from 'react';

import './credits.css';

export const metadata = {
	title: 'Credits',
	description: 'One credit balance for chat, canvas, video and training',
};

export default function RootLayout({ children }: { children: ReactNode }) {
	return (
		<html lang="en">
			<body>{children}</body>
		</html>
	);
}

// Server packages are loaded by Node at run time, not bundled: the Prisma
// client (generated into node_modules/.prisma), its pg adapter, ioredis, and
// @credits/client (linked from clients/node).
/** @type {import('next').NextConfig} */
const nextConfig = {
	serverExternalPackages: ['@credits/client', '@prisma/client', '@prisma/adapter-pg', 'pg', 'ioredis'],
	poweredByHeader: false,
	reactStrictMode: true,
};

export default nextConfig;
